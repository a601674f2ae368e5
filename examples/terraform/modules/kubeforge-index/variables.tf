variable "kubeforge_out" {
  description = "Path of kubeforge's output directory (OUT) on the machine running Terraform."
  type        = string
}

variable "nodes" {
  description = "Names of the nodes (as in the cluster spec) to describe; null (the default) for every node of the index. A name that is not a node of the index is an error."
  type        = list(string)
  default     = null
}
