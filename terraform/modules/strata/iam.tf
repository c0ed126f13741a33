# Four ECS roles, each with only what its holder does:
#
#   agent execution role     pull the image, write the agent log group
#   metadata execution role  pull the image, write the metadata log group, read the one
#                            database secret (ECS injects it as DB_USERNAME/DB_PASSWORD)
#   agent task role          the agents' S3 access, limited to <bucket>/<prefix>/
#   metadata task role       nothing today (the metadata service reaches only PostgreSQL)
#
# Plus the RDS Enhanced Monitoring role when db_monitoring_interval > 0.

locals {
  # ECR repository of the image, when it is a private ECR image
  # (<account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag|@digest]).
  ecr_image_pattern = "^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com(\\.cn)?/([^:@]+)"
  ecr_repository_arns = distinct([
    for image in distinct([var.image, local.agent_image]) :
    format(
      "arn:%s:ecr:%s:%s:repository/%s",
      local.partition,
      regex(local.ecr_image_pattern, image)[1],
      regex(local.ecr_image_pattern, image)[0],
      regex(local.ecr_image_pattern, image)[3],
    )
    if can(regex(local.ecr_image_pattern, image))
  ])

  bucket_objects_arn = "${aws_s3_bucket.data.arn}/${local.bucket_prefix}/*"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only ECS acting for this account may assume the roles (confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# Image pull and log writing, shared by both execution roles.
data "aws_iam_policy_document" "execution_common" {
  # GetAuthorizationToken is account-wide: it has no resource to scope to.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid = "EcrPull"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = local.ecr_repository_arns
    }
  }
}

# --- Agents -----------------------------------------------------------------------

resource "aws_iam_role" "agent_execution" {
  name_prefix        = "${var.name}-agent-exec-"
  description        = "ECS execution role of the ${var.name} Strata agents"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "agent_execution" {
  source_policy_documents = [data.aws_iam_policy_document.execution_common.json]

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.agent.arn}:*"]
  }
}

resource "aws_iam_role_policy" "agent_execution" {
  name   = "execution"
  role   = aws_iam_role.agent_execution.id
  policy = data.aws_iam_policy_document.agent_execution.json
}

resource "aws_iam_role" "agent_task" {
  name_prefix        = "${var.name}-agent-task-"
  description        = "Task role of the ${var.name} Strata agents: S3 access under the Strata prefix"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "agent_task" {
  # Segment objects: create-only PUTs, ranged GETs, deletes by retention and GC. Only
  # under <prefix>/; the rest of the bucket is out of reach. AbortMultipartUpload lets an
  # agent clean up a multipart upload it started, instead of waiting for the lifecycle rule.
  statement {
    sid = "SegmentObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.bucket_objects_arn]
  }

  statement {
    sid       = "ListStrataPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.bucket_prefix, "${local.bucket_prefix}/*"]
    }
  }

  dynamic "statement" {
    for_each = var.bucket_kms_key_arn == null ? [] : [var.bucket_kms_key_arn]
    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid = "EcsExec"
      actions = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "agent_task" {
  name   = "strata-bucket"
  role   = aws_iam_role.agent_task.id
  policy = data.aws_iam_policy_document.agent_task.json
}

# --- Metadata service ---------------------------------------------------------------

resource "aws_iam_role" "metadata_execution" {
  name_prefix        = "${var.name}-meta-exec-"
  description        = "ECS execution role of the ${var.name} Strata metadata service"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "metadata_execution" {
  source_policy_documents = [data.aws_iam_policy_document.execution_common.json]

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.metadata.arn}:*"]
  }

  # The database credentials, and nothing else in Secrets Manager.
  statement {
    sid       = "DatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_secret_arn]
  }

  dynamic "statement" {
    for_each = var.db_kms_key_arn == null ? [] : [var.db_kms_key_arn]
    content {
      sid       = "DatabaseSecretKey"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "metadata_execution" {
  name   = "execution"
  role   = aws_iam_role.metadata_execution.id
  policy = data.aws_iam_policy_document.metadata_execution.json
}

resource "aws_iam_role" "metadata_task" {
  name_prefix        = "${var.name}-meta-task-"
  description        = "Task role of the ${var.name} Strata metadata service"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "metadata_task" {
  count = var.enable_execute_command ? 1 : 0

  statement {
    sid = "EcsExec"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "metadata_task" {
  count = var.enable_execute_command ? 1 : 0

  name   = "ecs-exec"
  role   = aws_iam_role.metadata_task.id
  policy = data.aws_iam_policy_document.metadata_task[0].json
}

# --- RDS Enhanced Monitoring ---------------------------------------------------------

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.db_monitoring_interval > 0 ? 1 : 0

  name_prefix        = "${var.name}-rds-mon-"
  description        = "RDS Enhanced Monitoring of the ${var.name} metadata database"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.db_monitoring_interval > 0 ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}
