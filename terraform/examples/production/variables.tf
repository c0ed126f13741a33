variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region to deploy into."
}

variable "name" {
  type        = string
  default     = "strata"
  description = "Name prefix of every resource."
}

variable "image" {
  type        = string
  description = "Strata container image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/strata:0.1.0."
}

variable "agent_image" {
  type        = string
  default     = null
  description = "Image for the agents only, during a two-step upgrade (metadata first); null uses image."
}

variable "vpc_cidr_block" {
  type        = string
  default     = "10.40.0.0/16"
  description = "CIDR block of the VPC this example creates."
}

variable "kafka_client_cidr_blocks" {
  type        = list(string)
  default     = []
  description = "CIDR blocks of the Kafka clients (e.g. application subnets, peered VPCs)."
}

variable "kafka_client_security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups of Kafka clients inside the VPC."
}

variable "metadata_client_security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups of operator hosts that run `strata topic` against the metadata service."
}

variable "agent_min_count" {
  type        = number
  default     = 3
  description = "Fewest agents (at least one per zone)."
}

variable "agent_max_count" {
  type        = number
  default     = 30
  description = "Most agents."
}

variable "bucket_kms_key_arn" {
  type        = string
  default     = null
  description = "Customer managed KMS key for the bucket; null uses SSE-S3."
}

variable "db_kms_key_arn" {
  type        = string
  default     = null
  description = "Customer managed KMS key for the database, its secret and Performance Insights; null uses AWS managed keys."
}
