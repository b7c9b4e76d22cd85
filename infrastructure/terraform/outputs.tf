output "sns_maker_topic_arn" {
  description = "PW_SNS_MAKER_TOPIC_ARN"
  value       = aws_sns_topic.maker_notifications.arn
}

output "sns_buyer_topic_arn" {
  description = "PW_SNS_BUYER_TOPIC_ARN"
  value       = aws_sns_topic.buyer_notifications.arn
}

output "auction_events_topic_arn" {
  description = "PW_AUCTION_EVENTS_TOPIC_ARN (also carries operations.* alerts)"
  value       = aws_sns_topic.auction_events.arn
}

output "api_url" {
  description = "The API's base URL"
  value       = local.api_url
}

output "alb_dns_name" {
  description = "Point api_domain_name here (CNAME or alias)"
  value       = aws_lb.api.dns_name
}

output "expiry_schedule_name" {
  description = "EventBridge Scheduler schedule running one expiry pass a minute"
  value       = aws_scheduler_schedule.expire_due.name
}

output "expiry_lambda_name" {
  description = "The expiry Lambda (payment_window.lambda_handler.handler)"
  value       = aws_lambda_function.expire_due.function_name
}

output "expiry_dlq_url" {
  description = "Dead letters of the schedule and of the Lambda"
  value       = aws_sqs_queue.expiry_dlq.url
}

output "ecs_cluster_name" {
  description = "ECS cluster of the api, worker and relay services"
  value       = aws_ecs_cluster.this.name
}

output "task_definition_families" {
  description = "Task definition family per service (one-off commands run as overrides of these)"
  value       = { for name, definition in aws_ecs_task_definition.service : name => definition.family }
}

output "app_security_group_id" {
  description = "Security group for one-off tasks (migrate, reconcile, relay --status)"
  value       = aws_security_group.app.id
}

output "private_subnet_ids" {
  description = "Subnets for one-off tasks"
  value       = var.private_subnet_ids
}

output "database_endpoint" {
  description = "PostgreSQL host:port"
  value       = aws_db_instance.store.endpoint
}

output "database_master_secret_arn" {
  description = "RDS-managed master credentials (for creating the application role)"
  value       = aws_db_instance.store.master_user_secret[0].secret_arn
}

output "database_url_secret_arn" {
  description = "Secret to fill with PW_DATABASE_URL (docs/operations.md, First deployment)"
  value       = aws_secretsmanager_secret.database_url.arn
}

output "redis_primary_endpoint" {
  description = "Redis primary endpoint (TLS, AUTH)"
  value       = aws_elasticache_replication_group.index.primary_endpoint_address
}
