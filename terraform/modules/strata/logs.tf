# CloudWatch log groups, created here so they have a retention (groups created implicitly
# by ECS or RDS never expire). Strata logs to stderr; STRATA_LOG sets the filter.

resource "aws_cloudwatch_log_group" "agent" {
  #checkov:skip=CKV_AWS_338:Operational logs; retention is a variable (log_retention_days) chosen per deployment rather than a fixed year.
  name              = "/ecs/${var.name}/agent"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "metadata" {
  #checkov:skip=CKV_AWS_338:Operational logs; retention is a variable (log_retention_days) chosen per deployment rather than a fixed year.
  name              = "/ecs/${var.name}/metadata"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

# The database's exported logs (enabled_cloudwatch_logs_exports in rds.tf).
resource "aws_cloudwatch_log_group" "db" {
  #checkov:skip=CKV_AWS_338:Operational logs; retention is a variable (log_retention_days) chosen per deployment rather than a fixed year.
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.db_identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}
