variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region to deploy into."
}

variable "name" {
  type        = string
  default     = "strata-dev"
  description = "Name prefix of every resource."
}

variable "image" {
  type        = string
  description = "Strata container image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/strata:0.1.0."
}

variable "create_client_instance" {
  type        = bool
  default     = true
  description = "Create a small EC2 instance with kcat in the VPC, reachable with SSM Session Manager, to try the cluster."
}
