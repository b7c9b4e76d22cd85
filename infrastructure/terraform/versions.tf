terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # cluster_mode on aws_elasticache_replication_group and logging_config on Lambda.
      version = ">= 5.70, < 7.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Service     = "payment-window"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
