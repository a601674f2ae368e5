output "nodes" {
  description = "The nodes described, sorted."
  value       = local.nodes
}

output "files" {
  description = "Per node, its files in index order: path (in OUT), dest, mode, owner, group, sha256, secret, sealed (path in OUT of the age-encrypted copy, or null). No content."
  value       = local.files
}

output "files_by_path" {
  description = "Every file of the nodes described, by its path in OUT (unique), with its node: for for_each."
  value       = merge([for n in local.nodes : { for f in local.files[n] : f.path => merge(f, { node = n }) }]...)
}

output "directories" {
  description = "Per node, the directories to create before its files: dest, mode, owner, group."
  value       = local.directories
}

output "cloud_config" {
  description = "Per node, #cloud-config user data: bootcmd creates the node's directories with mode and owner, write_files holds its NON-secret files with their content, mode and owner. Secret files are not in it."
  value       = local.cloud_config
}

output "secret_files" {
  description = "Per node, the secret files that cloud_config leaves out (path in OUT, dest, mode, sealed copy): deliver them over SSH or another secret channel."
  value = {
    for n in local.nodes : n => [
      for f in local.files[n] : { path = f.path, dest = f.dest, mode = f.mode, sealed = f.sealed } if f.secret
    ]
  }
}

output "certificate_expiry" {
  description = "Per file of the index that holds a certificate (or a kubeconfig's client certificate), whoever it goes to, when it expires: for renewal alerts."
  value       = { for f in local.index.files : f.path => f.certificate.notAfter if f.certificate != null }
}
