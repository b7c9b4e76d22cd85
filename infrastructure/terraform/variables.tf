variable "environment" {
  description = "Deployment name (production, staging, ...); part of every resource name."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.environment))
    error_message = "environment: lower-case letters, digits and dashes, 2-21 characters."
  }
}

variable "aws_region" {
  description = "AWS region; also passed to the service as PW_AWS_REGION (SNS client)."
  type        = string
  default     = "us-east-1"
}

# --- network ------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC that holds every resource."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with a NAT route: Stripe and Segment are on the internet) for the ECS tasks and the Lambda."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "At least two private subnets, in different availability zones."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets for the internet-facing ALB."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "At least two public subnets, in different availability zones."
  }
}

variable "data_subnet_ids" {
  description = "Subnets for RDS and ElastiCache (no internet route needed); at least two AZs."
  type        = list(string)

  validation {
    condition     = length(var.data_subnet_ids) >= 2
    error_message = "At least two data subnets, in different availability zones."
  }
}

variable "api_ingress_cidr_blocks" {
  description = "Who may reach the API's HTTPS listener (buyers' browsers and Stripe webhooks: normally everyone)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --- the application ----------------------------------------------------------------------

variable "image" {
  description = "Container image (ECR URI with an immutable tag or digest) built from the repository's Dockerfile."
  type        = string
}

variable "lambda_package_s3_bucket" {
  description = "S3 bucket holding the expiry Lambda's zip (see docs/operations.md, 'Building the Lambda package')."
  type        = string
}

variable "lambda_package_s3_key" {
  description = "S3 key of the expiry Lambda's zip."
  type        = string
}

variable "lambda_package_s3_object_version" {
  description = "S3 object version of the zip (a versioned bucket makes deploys exact and rollbacks possible)."
  type        = string
  default     = null
}

variable "api_desired_count" {
  description = "API tasks."
  type        = number
  default     = 2
}

variable "worker_desired_count" {
  description = "Expiry workers; they share the Redis claim lease and the Stripe budget (PW_STRIPE_RPS, background share capped by PW_STRIPE_EXPIRE_RPS)."
  type        = number
  default     = 2
}

variable "relay_desired_count" {
  description = "Outbox relays; they share the outbox through FOR UPDATE SKIP LOCKED."
  type        = number
  default     = 2
}

variable "task_cpu" {
  description = "Fargate CPU units per task."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate memory (MiB) per task."
  type        = number
  default     = 1024
}

variable "window_minutes" {
  description = "PW_WINDOW_MINUTES: length of a new payment window."
  type        = number
  default     = 1440
}

variable "stripe_rps" {
  description = "PW_STRIPE_RPS: Stripe calls per second of the whole deployment together (buyer-facing calls first); keep it under Stripe's per-endpoint limit (25/s by default) less what the marketplace's own integration spends."
  type        = number
  default     = 20
}

variable "stripe_expire_rps" {
  description = "PW_STRIPE_EXPIRE_RPS: cap on the background share (expiry, re-checks) of PW_STRIPE_RPS, all workers and the Lambda together; equal to stripe_rps, background calls take whatever buyer-facing calls leave."
  type        = number
  default     = 20
}

variable "default_max_extension_minutes" {
  description = "PW_DEFAULT_MAX_EXTENSION_MINUTES: policy for makers without their own row."
  type        = number
  default     = 1440
}

variable "default_makers_may_override" {
  description = "PW_DEFAULT_MAKERS_MAY_OVERRIDE: policy for makers without their own row."
  type        = bool
  default     = false
}

variable "default_on_expiry" {
  description = "PW_DEFAULT_ON_EXPIRY: relist, notify_maker or offer_next_bidder."
  type        = string
  default     = "relist"

  validation {
    condition     = contains(["relist", "notify_maker", "offer_next_bidder"], var.default_on_expiry)
    error_message = "default_on_expiry: relist, notify_maker or offer_next_bidder."
  }
}

variable "dogstatsd_host" {
  description = "PW_DOGSTATSD_HOST: a DogStatsD agent reachable from the VPC (UDP 8125); null leaves metrics off."
  type        = string
  default     = null
}

variable "jwt_jwks_url" {
  description = "PW_JWT_JWKS_URL: RS256 keys for bearer tokens; null uses the HS256 secret only."
  type        = string
  default     = null
}

# --- secrets that exist before this module (created and rotated by their owners) -----------

variable "stripe_api_key_secret_arn" {
  description = "Secrets Manager secret (plain string) holding the Stripe secret key: PW_STRIPE_API_KEY."
  type        = string
}

variable "stripe_webhook_secret_arn" {
  description = "Secrets Manager secret (plain string) holding the Stripe webhook signing secret: PW_STRIPE_WEBHOOK_SECRET."
  type        = string
}

variable "jwt_secret_arn" {
  description = "Secrets Manager secret (plain string) holding the HS256 JWT secret: PW_JWT_SECRET."
  type        = string
}

variable "segment_write_key_secret_arn" {
  description = "Secrets Manager secret holding the Segment write key (PW_SEGMENT_WRITE_KEY); null leaves Segment off."
  type        = string
  default     = null
}

variable "webhook_endpoints" {
  description = "HTTPS URLs that receive every notice as a signed Standard Webhook (PW_WEBHOOK_ENDPOINTS); empty leaves outgoing webhooks off."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for url in var.webhook_endpoints : startswith(url, "https://")])
    error_message = "Webhook endpoints must be https:// URLs."
  }
}

variable "webhook_secret_arn" {
  description = "Secrets Manager secret holding the webhook signing secret(s), whsec_..., comma-separated during a roll (PW_WEBHOOK_SECRET); needed when webhook_endpoints is set. Only the relay reads it."
  type        = string
  default     = null
}

variable "redis_auth_token_secret_arn" {
  description = "Secrets Manager secret (plain string, 16-128 letters and digits) holding the Redis AUTH token."
  type        = string
}

variable "secrets_kms_key_arns" {
  description = "KMS keys that encrypt the secrets above, when they are not this module's key (the tasks need kms:Decrypt on them)."
  type        = list(string)
  default     = []
}

# --- edge ----------------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate for the API's HTTPS listener."
  type        = string
}

variable "api_domain_name" {
  description = "DNS name the certificate covers, pointed at the ALB (a CNAME/alias kept outside this module); null: the ALB's own name."
  type        = string
  default     = null
}

variable "alb_access_logs_bucket" {
  description = "Existing S3 bucket (with the ELB log-delivery bucket policy) for the ALB's access logs."
  type        = string
}

# --- data stores ---------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL major.minor."
  type        = string
  default     = "16.4"
}

variable "db_allocated_storage" {
  description = "Initial storage (GiB); autoscaling goes up to db_max_allocated_storage."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling (GiB)."
  type        = number
  default     = 500
}

variable "db_backup_retention_days" {
  description = "Automated backup retention (point-in-time recovery window)."
  type        = number
  default     = 14
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.r7g.large"
}

variable "redis_engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "redis_replicas" {
  description = "Replicas of the primary (each in another AZ); failover promotes one."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1 && var.redis_replicas <= 5
    error_message = "redis_replicas: 1-5 (automatic failover needs at least one)."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for every log group."
  type        = number
  default     = 365
}
