terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Keep production state in a remote backend with locking, for example:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "strata/production.tfstate"
  #   region       = "eu-west-1"
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "strata"
      Environment = "production"
    }
  }
}
