# PostgreSQL for the metadata service: topics, the offset sequencer, the segment index and
# consumer group offsets. It is small next to the bucket but it is the source of truth for
# which records exist, so it gets Multi-AZ, backups, deletion protection and encryption.
#
# The master password is generated and stored by RDS in Secrets Manager
# (manage_master_user_password). The metadata task receives the user name and password
# from that secret through ECS (see ecs_metadata.tf) and builds STRATA_STORE from them.

locals {
  db_identifier             = "${var.name}-metadata"
  db_port                   = 5432
  db_parameter_group_family = "postgres${split(".", var.db_engine_version)[0]}"
  db_secret_arn             = aws_db_instance.metadata.master_user_secret[0].secret_arn
}

resource "aws_db_subnet_group" "metadata" {
  name        = local.db_identifier
  description = "Subnets of the ${var.name} metadata database"
  subnet_ids  = local.database_subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "metadata" {
  name_prefix = "${local.db_identifier}-"
  description = "PostgreSQL settings of the ${var.name} metadata database"
  family      = local.db_parameter_group_family
  tags        = local.tags

  # Only TLS connections (the metadata service connects with sslmode=require).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements end up in the postgresql log (exported to CloudWatch).
  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_ms)
  }

  # Schema changes (the metadata service's migrations) are logged too.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  # A session stuck inside a transaction holds locks the offset sequencer needs.
  parameter {
    name  = "idle_in_transaction_session_timeout"
    value = "60000"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "metadata" {
  # These settings are variables with the safe value as default; the dev example turns them
  # off to stay small and disposable, which is what checkov sees there.
  #checkov:skip=CKV_AWS_293:Deletion protection is a variable (db_deletion_protection), on by default.
  #checkov:skip=CKV_AWS_157:Multi-AZ is a variable (db_multi_az), on by default.
  #checkov:skip=CKV_AWS_353:Performance Insights is a variable (db_performance_insights_enabled), on by default.
  #checkov:skip=CKV_AWS_118:Enhanced Monitoring is a variable (db_monitoring_interval), 60 seconds by default.
  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.db_kms_key_arn

  db_name                       = var.db_name
  username                      = var.db_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.db_kms_key_arn
  # Lets a later switch to IAM database authentication happen without a restart.
  iam_database_authentication_enabled = true

  port                   = local.db_port
  db_subnet_group_name   = aws_db_subnet_group.metadata.name
  parameter_group_name   = aws_db_parameter_group.metadata.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period  = var.db_backup_retention_days
  backup_window            = var.db_backup_window
  maintenance_window       = var.db_maintenance_window
  copy_tags_to_snapshot    = true
  delete_automated_backups = false

  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = var.db_skip_final_snapshot ? null : "${local.db_identifier}-final"

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = var.db_apply_immediately

  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled          = var.db_performance_insights_enabled
  performance_insights_kms_key_id       = var.db_performance_insights_enabled ? var.db_kms_key_arn : null
  performance_insights_retention_period = var.db_performance_insights_enabled ? 7 : null

  monitoring_interval = var.db_monitoring_interval
  monitoring_role_arn = var.db_monitoring_interval > 0 ? aws_iam_role.rds_monitoring[0].arn : null

  tags = local.tags

  # The log groups exist first, so they get our retention instead of "never expire".
  depends_on = [aws_cloudwatch_log_group.db]
}
