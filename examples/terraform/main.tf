# Hands each node its files from kubeforge's output directory (OUT), driven by OUT/index.json.
#
# What goes where comes from the module ./modules/kubeforge-index (no provider; Terraform 1.0 or later), which
# reads the index and never a secret file's content. This root module delivers it, in one of two ways or both:
#   1. SSH provisioners (null_resource.kubeforge_file, on by default): every file of a node, secret or not, is
#      uploaded from OUT by path. Terraform state holds each file's destination, mode, owner and SHA-256, never its
#      content, so private keys and kubeconfigs stay out of state.
#   2. cloud-init (output "cloud_config"): a `#cloud-config` document per node that creates its directories and
#      writes its NON-secret files only (certificates, the service-account public key, static pod manifests, the
#      kubelet config). Their content is in state and plan output, which is fine for public files. Secret files
#      are never put there: deliver them with (1) or another secret channel (output "secret_files").
#
# Needs Terraform 1.3 or later (optional() attributes, preconditions) and the hashicorp/null provider. kubeforge's
# tests apply the module with Terraform 1.0.3 but not this file (no provider can be installed there); see README.md.

terraform {
  required_version = ">= 1.3"
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 3.2"
    }
  }
}

variable "kubeforge_out" {
  description = "Path of kubeforge's output directory (OUT) on the machine running Terraform."
  type        = string
}

variable "nodes" {
  description = "How to reach each node over SSH, by the node's name in the cluster spec. Nodes of the spec that are missing here get nothing; a name that is not a node of the spec is an error."
  type = map(object({
    host             = string
    user             = optional(string, "root")
    private_key_path = optional(string)
  }))
}

variable "use_ssh_provisioner" {
  description = "Upload every file of each node over SSH (null_resource.kubeforge_file). Set false to only build the cloud-init output."
  type        = bool
  default     = true
}

variable "staging_dir" {
  description = "Directory on each node (created with mode 0700) where files are uploaded before being installed with their mode and owner."
  type        = string
  default     = "/var/tmp/kubeforge-staging"
}

module "index" {
  source        = "./modules/kubeforge-index"
  kubeforge_out = var.kubeforge_out
  nodes         = keys(var.nodes)
}

# Creates the directories each node needs, with their owner and mode, before any file lands. Missing parents
# get the default mode; owner and mode are set after all exist, so that the order of the list does not matter.
resource "null_resource" "kubeforge_dirs" {
  for_each = { for node, dirs in module.index.directories : node => dirs if var.use_ssh_provisioner }

  triggers = {
    dirs = jsonencode(each.value)
  }

  connection {
    type        = "ssh"
    host        = var.nodes[each.key].host
    user        = var.nodes[each.key].user
    private_key = var.nodes[each.key].private_key_path == null ? null : file(var.nodes[each.key].private_key_path)
  }

  provisioner "remote-exec" {
    inline = concat(
      ["install -d -m 0700 '${var.staging_dir}'"],
      [for d in each.value : "install -d '${d.dest}'"],
      [for d in each.value : "chown ${d.owner}:${d.group} '${d.dest}' && chmod ${d.mode} '${d.dest}'"],
    )
  }
}

# One resource per file: uploaded by path (its content never enters state), then installed with the index's
# mode, owner and group. The SHA-256 trigger re-uploads a file when kubeforge changes it.
resource "null_resource" "kubeforge_file" {
  for_each   = { for path, f in module.index.files_by_path : path => f if var.use_ssh_provisioner }
  depends_on = [null_resource.kubeforge_dirs]

  triggers = {
    dest   = each.value.dest
    mode   = each.value.mode
    owner  = "${each.value.owner}:${each.value.group}"
    sha256 = each.value.sha256
  }

  connection {
    type        = "ssh"
    host        = var.nodes[each.value.node].host
    user        = var.nodes[each.value.node].user
    private_key = var.nodes[each.value.node].private_key_path == null ? null : file(var.nodes[each.value.node].private_key_path)
  }

  provisioner "file" {
    source      = "${var.kubeforge_out}/${each.value.path}"
    destination = "${var.staging_dir}/${each.value.sha256}"
  }

  provisioner "remote-exec" {
    inline = [
      "echo '${each.value.sha256}  ${var.staging_dir}/${each.value.sha256}' | sha256sum -c --quiet",
      "install -D -m ${each.value.mode} -o ${each.value.owner} -g ${each.value.group} '${var.staging_dir}/${each.value.sha256}' '${each.value.dest}'",
      "rm -f '${var.staging_dir}/${each.value.sha256}'",
    ]
  }

  lifecycle {
    # With pki.encryption.age the secret files are in OUT only sealed until `gen --materialize`.
    precondition {
      condition     = fileexists("${var.kubeforge_out}/${each.value.path}")
      error_message = "${var.kubeforge_out}/${each.value.path} is not in OUT (sealed: ${coalesce(each.value.sealed, "no")}): run kubeforge's gen with --materialize ${each.value.node} (or all) and the age identity first."
    }
  }
}

output "cloud_config" {
  description = "Per node, a #cloud-config user-data document that creates the node's directories and writes its NON-secret files. Secret files (keys, kubeconfigs) are not in it."
  value       = module.index.cloud_config
}

output "secret_files" {
  description = "Per node, the secret files that cloud_config leaves out (paths in OUT and destinations): deliver them over SSH (use_ssh_provisioner) or another secret channel."
  value       = module.index.secret_files
}

output "certificate_expiry" {
  description = "Per file that holds a certificate (or a kubeconfig's client certificate), when it expires: for renewal alerts."
  value       = module.index.certificate_expiry
}
