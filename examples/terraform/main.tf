# Hands each node its files from kubeforge's output directory (OUT), driven by OUT/index.json.
#
# Two ways, pick one or both:
#   1. SSH provisioners (null_resource.kubeforge_file, on by default): every file of a node, secret or not,
#      is uploaded from OUT by path. Terraform state holds each file's destination, mode and SHA-256, never its
#      content, so private keys and kubeconfigs stay out of state.
#   2. cloud-init (output "cloud_config"): a `#cloud-config` document per node with `write_files` for the
#      node's NON-secret files only (certificates, the service-account public key, static pod manifests). Their
#      content is read with file() and so is in state and plan output, which is fine for public files. Secret
#      files are never put there: deliver them with (1) or another secret channel.
#
# Naming convention, checked by tests/consumers.rs: `f` and `each.value.` (in resources whose for_each is over
# file entries) always name an entry of index.json's `files`, `d` an entry of its `directories`, and
# `local.index.` its top level. The test fails if this file reads a field that index.json does not have.
#
# Not run in kubeforge's CI (Terraform is not installable there); see README.md.

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
  description = "How to reach each node over SSH, by the node's name in the cluster spec. Nodes of the spec that are missing here get nothing."
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

locals {
  index = jsondecode(file("${var.kubeforge_out}/index.json"))

  # Node name => that node's entries (index order, i.e. sorted by path).
  node_files = {
    for node in keys(var.nodes) : node => [for f in local.index.files : f if f.node == node]
  }

  # Node name => the directories it needs (index.json's `directories`).
  node_dirs = {
    for node in keys(var.nodes) : node => [for d in local.index.directories : d if d.node == node]
  }

  # Every entry that goes to a node listed in var.nodes, by its path in OUT (unique).
  deployed_files = {
    for f in local.index.files : f.path => f if contains(keys(var.nodes), coalesce(f.node, "-"))
  }

  # cloud-init write_files per node: public files only, never an entry with secret = true.
  write_files = {
    for node, files in local.node_files : node => [
      for f in files : {
        path        = f.dest
        content     = file("${var.kubeforge_out}/${f.path}")
        permissions = f.mode
        owner       = "${f.owner}:${f.group}"
      } if !f.secret
    ]
  }
}

# Creates the directories each node needs, with their owner and mode, before any file lands. Missing parents
# get the default mode; owner and mode are set after all exist, so that the order of the list does not matter.
resource "null_resource" "kubeforge_dirs" {
  for_each = { for node, dirs in local.node_dirs : node => dirs if var.use_ssh_provisioner }

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

  lifecycle {
    precondition {
      condition     = local.index.apiVersion == "kubeforge/v1alpha1" && local.index.kind == "Index"
      error_message = "${var.kubeforge_out}/index.json is not a kubeforge/v1alpha1 Index."
    }
  }
}

# One resource per file: uploaded by path (its content never enters state), then installed with the index's
# mode, owner and group. The SHA-256 trigger re-uploads a file when kubeforge changes it.
resource "null_resource" "kubeforge_file" {
  for_each   = { for path, f in local.deployed_files : path => f if var.use_ssh_provisioner }
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
}

output "cloud_config" {
  description = "Per node, a #cloud-config user-data document whose write_files holds the node's NON-secret files. Secret files (keys, kubeconfigs) are not in it."
  value       = { for node, files in local.write_files : node => "#cloud-config\n${yamlencode({ write_files = files })}" }

  precondition {
    condition     = local.index.apiVersion == "kubeforge/v1alpha1" && local.index.kind == "Index"
    error_message = "${var.kubeforge_out}/index.json is not a kubeforge/v1alpha1 Index."
  }
}

output "secret_files" {
  description = "Per node, the secret files that cloud_config leaves out (paths in OUT and destinations): deliver them over SSH (use_ssh_provisioner) or another secret channel."
  value = {
    for node, files in local.node_files : node => [for f in files : { path = f.path, dest = f.dest, mode = f.mode } if f.secret]
  }
}

output "certificate_expiry" {
  description = "Per file that holds a certificate (or a kubeconfig's client certificate), when it expires: for renewal alerts."
  value       = { for f in local.index.files : f.path => f.certificate.notAfter if f.certificate != null }
}
