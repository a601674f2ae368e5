# kubeforge-index: reads kubeforge's OUT/index.json and says, per node, which files go where (destination, mode,
# owner, group, SHA-256, whether the file is secret and where its sealed copy is), which directories to create, and
# a #cloud-config document with the node's PUBLIC files. No provider, no resource: only outputs, so it can be
# planned and applied anywhere (and is, in kubeforge's tests, with Terraform 1.0.3).
#
# It never reads a secret file: secret entries carry their path and checksum only, so private keys, kubeconfigs
# and the encryption config cannot reach Terraform state or plan output through this module. The only file
# contents it reads are those of public files (certificates, the service-account public key, manifests, configs),
# for the cloud-init document. With sealed secrets (pki.encryption.age) it works on the committed tree as it is:
# nothing that it reads is sealed.
#
# Written in the Terraform 1.0 language: no optional() object attributes, no preconditions; a failed check stops the
# plan through a regex() that does not match, whose error shows the offending value.

terraform {
  required_version = ">= 1.0"
}

locals {
  raw = jsondecode(file("${var.kubeforge_out}/index.json"))

  # Refuse anything but a kubeforge/v1alpha1 Index. Every output goes through local.index, so none is built from an
  # index of another format.
  format = regex("^kubeforge/v1alpha1 Index$", "${local.raw.apiVersion} ${local.raw.kind}")
  index  = local.format == "" ? null : local.raw

  # Every node that the index gives a file or a directory to.
  index_nodes = sort(distinct(concat(
    [for f in local.index.files : f.node if f.node != null],
    [for d in local.index.directories : d.node],
  )))
  wanted_nodes  = var.nodes == null ? local.index_nodes : sort(distinct(var.nodes))
  unknown_nodes = sort(setsubtract(local.wanted_nodes, local.index_nodes))
  # A name that is not a node of the index is a typo, not a node to skip: stop, naming it (the error shows this
  # local's value).
  unknown_nodes_error = "not nodes of ${var.kubeforge_out}/index.json: ${join(", ", local.unknown_nodes)}"
  nodes               = length(local.unknown_nodes) == 0 ? local.wanted_nodes : tolist([regex("^$", local.unknown_nodes_error)])

  # Node => its files, in index order (sorted by path).
  files = {
    for n in local.nodes : n => [
      for f in local.index.files : {
        path   = f.path
        dest   = f.dest
        mode   = f.mode
        owner  = f.owner
        group  = f.group
        sha256 = f.sha256
        secret = f.secret
        sealed = f.sealed
      } if f.node == n
    ]
  }

  # Node => the directories it needs.
  directories = {
    for n in local.nodes : n => [
      for d in local.index.directories : {
        dest  = d.dest
        mode  = d.mode
        owner = d.owner
        group = d.group
      } if d.node == n
    ]
  }

  # Node => #cloud-config user data. bootcmd (which cloud-init runs before write_files) creates the node's
  # directories with their mode and owner; write_files holds the node's public files only, never an entry with
  # secret = true.
  cloud_config = {
    for n in local.nodes : n => "#cloud-config\n${yamlencode({
      bootcmd = [
        for d in local.directories[n] : ["install", "-d", "-m", d.mode, "-o", d.owner, "-g", d.group, d.dest]
      ]
      write_files = [
        for f in local.files[n] : {
          path        = f.dest
          content     = file("${var.kubeforge_out}/${f.path}")
          permissions = f.mode
          owner       = "${f.owner}:${f.group}"
        } if !f.secret
      ]
    })}"
  }
}
