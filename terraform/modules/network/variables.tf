variable "name" {
  type        = string
  default     = "strata"
  description = "Name prefix of the network resources."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "cidr_block" {
  type        = string
  default     = "10.42.0.0/16"
  description = "IPv4 CIDR block of the VPC (a /16 at most, which Strata's node ids rely on)."

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) >= 16
    error_message = "cidr_block must be a valid IPv4 CIDR block of size /16 or smaller."
  }
}

variable "availability_zones" {
  type        = list(string)
  default     = null
  description = "Availability zone names to use, e.g. [\"eu-west-1a\", \"eu-west-1b\"]. Null takes the first az_count zones of the region that need no opt-in."

  validation {
    condition     = var.availability_zones == null || try(length(var.availability_zones) >= 2, false)
    error_message = "availability_zones must name at least two zones (RDS needs subnets in two zones)."
  }
}

variable "az_count" {
  type        = number
  default     = 3
  description = "Number of availability zones (one public and one private subnet each); ignored when availability_zones is set."

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6 (RDS needs subnets in two zones)."
  }
}

variable "nat_gateway_per_az" {
  type        = bool
  default     = true
  description = "One NAT gateway per zone (a zone failure leaves the others online) instead of one shared NAT gateway (cheaper, cross-zone traffic to it)."
}

variable "flow_log_retention_days" {
  type        = number
  default     = 30
  description = "Days CloudWatch keeps the VPC flow logs."
}
