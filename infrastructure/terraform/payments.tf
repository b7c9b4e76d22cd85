# payment-window in production: the API, the expiry worker and the outbox relay on ECS Fargate,
# the EventBridge schedule that runs one expiry pass a minute through a Lambda, and the stores
# (RDS PostgreSQL: the truth; ElastiCache Redis: the window index) and SNS topics they use.
#
# Every PW_ name below is a field of payment_window.config.Settings, and every command a
# registered `payment-window` command: tests/integration/test_terraform.py checks both.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  name       = "payment-window-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  api_url    = "https://${coalesce(var.api_domain_name, aws_lb.api.dns_name)}"
  partition  = data.aws_partition.current.partition

  topic_arns = [
    aws_sns_topic.maker_notifications.arn,
    aws_sns_topic.buyer_notifications.arn,
    aws_sns_topic.auction_events.arn,
  ]

  # Settings every process reads; none of them is secret.
  common_environment = merge(
    {
      PW_ENV                           = "production"
      PW_AWS_REGION                    = var.aws_region
      PW_WINDOW_MINUTES                = tostring(var.window_minutes)
      PW_STRIPE_RPS                    = tostring(var.stripe_rps)
      PW_STRIPE_EXPIRE_RPS             = tostring(var.stripe_expire_rps)
      # Every process that records a change writes each notice's copy per webhook endpoint, so
      # all read the endpoints (empty: webhooks off); only the relay holds the signing secret.
      PW_WEBHOOK_ENDPOINTS             = join(",", var.webhook_endpoints)
      PW_SNS_MAKER_TOPIC_ARN           = aws_sns_topic.maker_notifications.arn
      PW_SNS_BUYER_TOPIC_ARN           = aws_sns_topic.buyer_notifications.arn
      PW_AUCTION_EVENTS_TOPIC_ARN      = aws_sns_topic.auction_events.arn
      PW_DEFAULT_MAX_EXTENSION_MINUTES = tostring(var.default_max_extension_minutes)
      PW_DEFAULT_MAKERS_MAY_OVERRIDE   = tostring(var.default_makers_may_override)
      PW_DEFAULT_ON_EXPIRY             = var.default_on_expiry
      PW_PUBLIC_BASE_URL               = local.api_url
      PW_LOG_JSON                      = "true"
    },
    var.dogstatsd_host == null ? {} : { PW_DOGSTATSD_HOST = var.dogstatsd_host },
    var.jwt_jwks_url == null ? {} : { PW_JWT_JWKS_URL = var.jwt_jwks_url },
  )

  # Every process reads the store.
  store_secrets = {
    PW_DATABASE_URL = aws_secretsmanager_secret.database_url.arn
  }

  # Secrets per process: each execution role may read exactly these, and each process asks at
  # start-up for exactly what it uses (payment_window.runner.require_for): the API opens
  # checkouts and verifies tokens, the worker and the expiry pass close checkouts at Stripe,
  # the relay only publishes, so it never holds the Stripe key.
  secrets = {
    api = merge(local.store_secrets, {
      PW_STRIPE_API_KEY        = var.stripe_api_key_secret_arn
      PW_JWT_SECRET            = var.jwt_secret_arn
      PW_REDIS_URL             = aws_secretsmanager_secret.redis_url.arn
      PW_STRIPE_WEBHOOK_SECRET = var.stripe_webhook_secret_arn
    })
    worker = merge(local.store_secrets, {
      PW_STRIPE_API_KEY = var.stripe_api_key_secret_arn
      PW_REDIS_URL      = aws_secretsmanager_secret.redis_url.arn
    })
    relay = merge(
      local.store_secrets,
      var.segment_write_key_secret_arn == null ? {} : {
        PW_SEGMENT_WRITE_KEY = var.segment_write_key_secret_arn
      },
      var.webhook_secret_arn == null ? {} : { PW_WEBHOOK_SECRET = var.webhook_secret_arn },
    )
    expire_due = merge(local.store_secrets, {
      PW_STRIPE_API_KEY = var.stripe_api_key_secret_arn
      PW_REDIS_URL      = aws_secretsmanager_secret.redis_url.arn
    })
  }

  # What each process runs (payment_window.loops.loops_for): the API serves requests only, the
  # worker closes windows, the relay publishes. The task roles and secrets below follow from
  # it, and tests/integration/test_terraform.py checks that they do.
  services = {
    api = {
      command       = ["serve", "--host", "0.0.0.0", "--port", "8000"]
      desired_count = var.api_desired_count
      environment   = { PW_SERVE_LOOPS = "" }
    }
    worker = {
      command       = ["worker"]
      desired_count = var.worker_desired_count
      environment   = { PW_WORKER_LOOPS = "worker" }
    }
    relay = {
      command       = ["relay"]
      desired_count = var.relay_desired_count
      environment   = {}
    }
  }

  # The API container's extras: its port and a health check (python's urllib: no curl in slim).
  api_container = {
    portMappings = [{ containerPort = 8000, protocol = "tcp" }]
    healthCheck = {
      command = [
        "CMD", "python", "-c",
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)",
      ]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 20
    }
  }

  kms_decrypt_key_arns = concat([aws_kms_key.payments.arn], var.secrets_kms_key_arns)
}

# --- encryption ----------------------------------------------------------------------------

resource "aws_kms_key" "payments" {
  description             = "${local.name}: logs, topics, queues, secrets, RDS, ElastiCache, schedule"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "payments" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.payments.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: its Resource "*" means this key only, and full access for the account root is what lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: its Resource "*" means this key only; service principals are limited by source account or encryption context.
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: its Resource "*" means this key only, never other resources.
  # Key administration and use through IAM policies of this account (the roles below).
  statement {
    sid       = "AccountAdministersThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisServicesLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:/payment-window/${var.environment}/*",
        "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:aws-waf-logs-${local.name}-api",
      ]
    }
  }

  # Subscribers to the encrypted topics (SQS queues, other accounts' Lambdas) receive messages
  # that SNS decrypts and re-encrypts on their behalf.
  statement {
    sid       = "SnsDeliversFromEncryptedTopics"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- notifications -------------------------------------------------------------------------

resource "aws_sns_topic" "maker_notifications" {
  name              = "${local.name}-maker-notifications"
  kms_master_key_id = aws_kms_key.payments.arn
}

resource "aws_sns_topic" "buyer_notifications" {
  name              = "${local.name}-buyer-notifications"
  kms_master_key_id = aws_kms_key.payments.arn
}

# Also carries operations alerts (event attribute `operations.*`): see adapters/sinks.py.
resource "aws_sns_topic" "auction_events" {
  name              = "${local.name}-auction-events"
  kms_master_key_id = aws_kms_key.payments.arn
}

# --- secrets this module owns --------------------------------------------------------------

# The Redis AUTH token comes from a secret its owner creates (docs/operations.md); the URL built
# from it lives in a second secret, the one the processes read. Both values also sit, marked
# sensitive, in the Terraform state: keep the state encrypted and access-controlled.
data "aws_secretsmanager_secret_version" "redis_auth_token" {
  secret_id = var.redis_auth_token_secret_arn
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:Derived from the AUTH token secret by Terraform; the token is rotated with ElastiCache's ROTATE strategy (docs/operations.md), not by a rotation Lambda.
  name                    = "${local.name}/redis-url"
  description             = "PW_REDIS_URL (rediss:// with the AUTH token) for payment-window"
  kms_key_id              = aws_kms_key.payments.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${urlencode(data.aws_secretsmanager_secret_version.redis_auth_token.secret_string)}@${aws_elasticache_replication_group.index.primary_endpoint_address}:${aws_elasticache_replication_group.index.port}/0"
}

# PW_DATABASE_URL for the application's own database role. The value is set by an operator once
# the role exists (docs/operations.md, "First deployment"), so no password passes through
# Terraform; the RDS master password is RDS-managed in its own secret.
resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:Holds a whole URL for an application role created by an operator; rotated by the procedure in docs/operations.md, not by a rotation Lambda.
  name                    = "${local.name}/database-url"
  description             = "PW_DATABASE_URL (postgresql://payment_window:...@host:5432/payment_window?ssl=require)"
  kms_key_id              = aws_kms_key.payments.arn
  recovery_window_in_days = 7
}

# --- network -------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "payment-window API load balancer"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.api_ingress_cidr_blocks)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from buyers, makers, admins and Stripe webhooks"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the API tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8000
  to_port                      = 8000
  referenced_security_group_id = aws_security_group.app.id
}

# One group for every process that runs the service (API, worker, relay, expiry Lambda).
resource "aws_security_group" "app" {
  name        = "${local.name}-app"
  description = "payment-window processes"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  security_group_id            = aws_security_group.app.id
  description                  = "API port, from the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = 8000
  to_port                      = 8000
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "app_https" {
  security_group_id = aws_security_group.app.id
  description       = "HTTPS to Stripe, Segment and the AWS APIs (SNS, Secrets Manager, ECR, Logs)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "app_to_db" {
  security_group_id            = aws_security_group.app.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "app_to_redis" {
  security_group_id            = aws_security_group.app.id
  description                  = "Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

resource "aws_vpc_security_group_egress_rule" "app_to_dogstatsd" {
  count             = var.dogstatsd_host == null ? 0 : 1
  security_group_id = aws_security_group.app.id
  description       = "DogStatsD metrics, inside the VPC"
  ip_protocol       = "udp"
  from_port         = 8125
  to_port           = 8125
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "payment-window PostgreSQL"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_app" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the service's processes"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.app.id
}

resource "aws_security_group" "redis" {
  name        = "${local.name}-redis"
  description = "payment-window Redis window index"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_app" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the service's processes"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.app.id
}

# --- PostgreSQL: the store, the system of record ------------------------------------------

resource "aws_db_subnet_group" "store" {
  name       = "${local.name}-store"
  subnet_ids = var.data_subnet_ids
}

resource "aws_db_parameter_group" "store" {
  name   = "${local.name}-postgres${split(".", var.db_engine_version)[0]}"
  family = "postgres${split(".", var.db_engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements and schema changes (migrations) in the log, not every statement.
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.assume["monitoring.rds.amazonaws.com"].json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "store" {
  identifier     = "${local.name}-store"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name                       = "payment_window"
  username                      = "pw_admin"
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.payments.arn
  # Optional for people (psql with a token); the service itself connects with the URL secret.
  iam_database_authentication_enabled = true

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.payments.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.store.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.store.name

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.name}-store-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.payments.arn
  performance_insights_retention_period = 7
}

# --- Redis: the window index ---------------------------------------------------------------

resource "aws_elasticache_subnet_group" "index" {
  name       = "${local.name}-index"
  subnet_ids = var.data_subnet_ids
}

resource "aws_cloudwatch_log_group" "redis" {
  name              = "/payment-window/${var.environment}/redis"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.payments.arn
}

# Cluster mode is DISABLED on purpose: the service connects with redis.asyncio.Redis (see
# adapters/index_factory.py), which does not follow MOVED redirections, so against a
# cluster-mode-enabled group any key outside the contacted node's slots fails. The keys are
# already Cluster-safe (one slot per script); switch to cluster mode only together with a
# RedisCluster client (tests/integration/test_terraform.py holds the two together).
# One shard, a primary plus replicas in other AZs, automatic failover to a replica.
resource "aws_elasticache_replication_group" "index" {
  replication_group_id = "${local.name}-index"
  description          = "payment-window window index"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  parameter_group_name = "default.redis${split(".", var.redis_engine_version)[0]}"

  cluster_mode               = "disabled"
  num_node_groups            = 1
  replicas_per_node_group    = var.redis_replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.index.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.payments.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = data.aws_secretsmanager_secret_version.redis_auth_token.secret_string
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = 7
  snapshot_window            = "02:00-03:00"
  maintenance_window         = "sun:05:30-sun:06:30"
  auto_minor_version_upgrade = true

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "engine-log"
  }
}

# --- IAM: one trust policy per AWS service principal ---------------------------------------

data "aws_iam_policy_document" "assume" {
  for_each = toset([
    "ecs-tasks.amazonaws.com",
    "lambda.amazonaws.com",
    "scheduler.amazonaws.com",
    "monitoring.rds.amazonaws.com",
  ])

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- ECS: API, worker, relay ---------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = local.services
  name              = "/payment-window/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.payments.arn
}

# Execution roles: pull the image, write the log group, read this process's secrets only.
resource "aws_iam_role" "execution" {
  for_each           = local.services
  name               = "${local.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs-tasks.amazonaws.com"].json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.services

  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = ["arn:${local.partition}:ecr:${var.aws_region}:${local.account_id}:repository/*"]
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service[each.key].arn}:*"]
  }

  statement {
    sid       = "ReadTheseSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = distinct(values(local.secrets[each.key]))
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = local.kms_decrypt_key_arns
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.services
  name     = "execution"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

# Task roles: what the running process may do. Only the relay loop calls AWS (SNS), and only the
# relay task runs it (the API's PW_SERVE_LOOPS and the worker's PW_WORKER_LOOPS leave it out);
# the API and the worker talk to PostgreSQL, Redis and Stripe and get an empty role.
resource "aws_iam_role" "task" {
  for_each           = local.services
  name               = "${local.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs-tasks.amazonaws.com"].json
}

data "aws_iam_policy_document" "relay" {
  statement {
    sid       = "PublishToTheThreeTopics"
    actions   = ["sns:Publish"]
    resources = local.topic_arns
  }

  statement {
    sid       = "EncryptForTheTopics"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.payments.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sns.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "relay" {
  name   = "publish"
  role   = aws_iam_role.task["relay"].id
  policy = data.aws_iam_policy_document.relay.json
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.services
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    merge(
      {
        name                   = each.key
        image                  = var.image
        command                = each.value.command
        essential              = true
        readonlyRootFilesystem = true
        privileged             = false
        # The worker finishes its batch on SIGTERM (claims it cannot finish go back to the
        # index); the relay's claimed rows come back when their lease ends.
        stopTimeout = 60
        environment = [
          for name, value in merge(local.common_environment, each.value.environment) :
          { name = name, value = value }
        ]
        secrets = [
          for name, arn in local.secrets[each.key] : { name = name, valueFrom = arn }
        ]
        logConfiguration = {
          logDriver = "awslogs"
          options = {
            awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
            awslogs-region        = var.aws_region
            awslogs-stream-prefix = each.key
          }
        }
      },
      { for key, value in local.api_container : key => value if each.key == "api" },
    )
  ])
}

resource "aws_ecs_service" "service" {
  for_each         = local.services
  name             = each.key
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.service[each.key].arn
  desired_count    = each.value.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  enable_execute_command = false

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.app.id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = "api"
      container_port   = 8000
    }
  }

  health_check_grace_period_seconds = each.key == "api" ? 30 : null

  depends_on = [aws_lb_listener.https]
}

# --- the API's load balancer ---------------------------------------------------------------

resource "aws_lb" "api" {
  #checkov:skip=CKV2_AWS_76:The attached WAF has the Log4j rules (KnownBadInputs); the check also demands the AnonymousIpList group, whose hosting-provider list would block Stripe webhooks and buyers on VPNs.
  name                       = "${local.name}-api"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  # Server-sent events (GET /payments/checkout/{id}/events) hold a connection open.
  idle_timeout = 120

  access_logs {
    bucket  = var.alb_access_logs_bucket
    prefix  = local.name
    enabled = true
  }
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; the hop to the task stays inside private subnets, and the task's security group admits only the ALB.
  name                 = "${local.name}-api"
  port                 = 8000
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  # /healthz, not /readyz: a Redis or PostgreSQL blip must not take every task out of service
  # (the failing requests already answer 503 on their own).
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# --- WAF in front of the API ---------------------------------------------------------------

resource "aws_wafv2_web_acl" "api" {
  name        = "${local.name}-api"
  description = "payment-window API"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "known-bad-inputs"
    priority = 10
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "common"
    priority = 20
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        # Stripe webhook events can exceed the rule's 8 KB body limit; a blocked webhook would
        # leave a paid session open until the expiry pass asks Stripe itself.
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.name}-common"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${local.name}-api"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "api" {
  resource_arn = aws_lb.api.arn
  web_acl_arn  = aws_wafv2_web_acl.api.arn
}

# WAF requires the aws-waf-logs- prefix.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${local.name}-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.payments.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "api" {
  resource_arn            = aws_wafv2_web_acl.api.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  # Bearer tokens and Stripe signatures stay out of the WAF log.
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }

  redacted_fields {
    single_header {
      name = "stripe-signature"
    }
  }
}

# --- expiry: EventBridge Scheduler -> Lambda, one pass a minute ----------------------------

resource "aws_sqs_queue" "expiry_dlq" {
  name                              = "${local.name}-expiry-dlq"
  kms_master_key_id                 = aws_kms_key.payments.arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600
}

resource "aws_cloudwatch_log_group" "expire_due" {
  name              = "/payment-window/${var.environment}/expire-due"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.payments.arn
}

resource "aws_iam_role" "expire_due" {
  name               = "${local.name}-expire-due"
  assume_role_policy = data.aws_iam_policy_document.assume["lambda.amazonaws.com"].json
}

resource "aws_iam_role_policy_attachment" "expire_due_vpc" {
  role       = aws_iam_role.expire_due.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

data "aws_iam_policy_document" "expire_due" {
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.expire_due.arn}:*"]
  }

  statement {
    sid       = "ReadTheseSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = distinct(values(local.secrets.expire_due))
  }

  statement {
    sid       = "DecryptSecretsAndEnvironment"
    actions   = ["kms:Decrypt"]
    resources = local.kms_decrypt_key_arns
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.expiry_dlq.arn]
  }

  statement {
    sid       = "EncryptDeadLetters"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.payments.arn]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

resource "aws_iam_role_policy" "expire_due" {
  name   = "expire-due"
  role   = aws_iam_role.expire_due.id
  policy = data.aws_iam_policy_document.expire_due.json
}

resource "aws_lambda_function" "expire_due" {
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile that this deployment does not have yet; the zip comes from a versioned bucket written only by CI.
  function_name     = "${local.name}-expire-due"
  description       = "One payment-window expiry pass (payment-window expire-due), invoked each minute"
  role              = aws_iam_role.expire_due.arn
  runtime           = "python3.11"
  architectures     = ["x86_64"]
  handler           = "payment_window.lambda_handler.handler"
  s3_bucket         = var.lambda_package_s3_bucket
  s3_key            = var.lambda_package_s3_key
  s3_object_version = var.lambda_package_s3_object_version
  memory_size       = 512
  # A pass closes windows until none is due, at PW_STRIPE_EXPIRE_RPS; a timed-out pass loses
  # nothing (its claims come back when their lease ends) and the next minute's pass goes on.
  timeout = 300
  # Bounds PostgreSQL connections; concurrent passes share the work safely but not faster,
  # since the Stripe budget is shared.
  reserved_concurrent_executions = 3
  kms_key_arn                    = aws_kms_key.payments.arn

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.app.id]
  }

  environment {
    variables = merge(local.common_environment, {
      # Lambda has no secret injection and the handler reads only the environment: this
      # wrapper (infrastructure/lambda/secrets_to_env.py, packaged at the zip's root) copies
      # the secrets below into it at cold start, before the runtime loads the handler.
      AWS_LAMBDA_EXEC_WRAPPER = "/var/task/secrets_to_env.py"
      SECRET_ENV_ARNS         = jsonencode(local.secrets.expire_due)
    })
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.expiry_dlq.arn
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.expire_due.name
  }

  depends_on = [aws_iam_role_policy.expire_due, aws_iam_role_policy_attachment.expire_due_vpc]
}

# A failed pass is not retried by Lambda: the next scheduled pass, a minute later, does the
# same work. The failure still lands in the DLQ.
resource "aws_lambda_function_event_invoke_config" "expire_due" {
  function_name                = aws_lambda_function.expire_due.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume["scheduler.amazonaws.com"].json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeTheExpiryLambda"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.expire_due.arn]
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.expiry_dlq.arn]
  }

  statement {
    sid       = "EncryptDeadLettersAndSchedule"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.payments.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-expire-due"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "expire_due" {
  name                         = "${local.name}-expire-due"
  description                  = "Closes overdue payment windows: one expiry pass a minute"
  group_name                   = "default"
  schedule_expression          = "rate(1 minute)"
  schedule_expression_timezone = "UTC"
  state                        = "ENABLED"
  kms_key_arn                  = aws_kms_key.payments.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.expire_due.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "eventbridge-scheduler", schedule = "${local.name}-expire-due" })

    # Retrying later than a minute is pointless: the next pass is already due by then.
    retry_policy {
      maximum_event_age_in_seconds = 60
      maximum_retry_attempts       = 2
    }

    dead_letter_config {
      arn = aws_sqs_queue.expiry_dlq.arn
    }
  }
}
