terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # State stays in a local file here. For anything shared, use a remote backend, e.g.
  # backend "s3" { bucket = "...", key = "strata/dev.tfstate", region = "...", use_lockfile = true }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "strata"
      Environment = "dev"
    }
  }
}
