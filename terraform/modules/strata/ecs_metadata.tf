# The metadata service: `strata metadata` on 9093 (gRPC), backed by the RDS database.
#
# The container starts through scripts/metadata-entrypoint.sh, which builds the store URL
#   STRATA_STORE=postgres://<user>:<password>@<host>:5432/<db>?sslmode=require
# from DB_* variables. ECS injects DB_USERNAME and DB_PASSWORD from the RDS-managed
# secret at task start (the execution role may read that one secret and nothing else),
# so the password never appears in the task definition or the Terraform state.

locals {
  metadata_environment = merge(
    {
      STRATA_LOG             = var.log_level
      STRATA_METADATA_LISTEN = "0.0.0.0:${local.metadata_port}"
      DB_HOST                = aws_db_instance.metadata.address
      DB_PORT                = tostring(local.db_port)
      DB_NAME                = var.db_name
      DB_OPTIONS             = var.db_url_options
    },
    var.metadata_environment,
  )

  metadata_container = {
    name      = "metadata"
    image     = var.image
    essential = true

    entryPoint = ["/bin/sh", "-c"]
    command    = [file("${path.module}/scripts/metadata-entrypoint.sh")]

    portMappings = [
      { name = "grpc", containerPort = local.metadata_port, protocol = "tcp" },
      { name = "http", containerPort = local.metadata_http_port, protocol = "tcp" },
    ]

    environment = [for k, v in local.metadata_environment : { name = k, value = v }]
    secrets = [
      { name = "DB_USERNAME", valueFrom = "${local.db_secret_arn}:username::" },
      { name = "DB_PASSWORD", valueFrom = "${local.db_secret_arn}:password::" },
    ]

    readonlyRootFilesystem = true
    stopTimeout            = var.metadata_stop_timeout

    # The HTTP /healthz endpoint (9096) is planned; until then the check is that the gRPC
    # port accepts connections. bash's /dev/tcp needs no extra tool in the image.
    healthCheck = {
      command     = ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${local.metadata_port}"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.metadata.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "metadata"
      }
    }
  }
}

resource "aws_ecs_task_definition" "metadata" {
  family                   = "${var.name}-metadata"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.metadata_cpu)
  memory                   = tostring(var.metadata_memory)
  execution_role_arn       = aws_iam_role.metadata_execution.arn
  task_role_arn            = aws_iam_role.metadata_task.arn
  container_definitions    = jsonencode([local.metadata_container])
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

resource "aws_ecs_service" "metadata" {
  name             = "${var.name}-metadata"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.metadata.arn
  desired_count    = var.metadata_desired_count
  launch_type      = "FARGATE"
  platform_version = var.fargate_platform_version

  # Start the new tasks before stopping old ones, so the service never has fewer than
  # metadata_desired_count instances during a deployment.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  enable_execute_command  = var.enable_execute_command
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  tags                    = local.tags

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.metadata.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.metadata.arn
  }

  # IAM policies must exist before a task tries to pull the image or read the secret.
  depends_on = [
    aws_iam_role_policy.metadata_execution,
    aws_vpc_security_group_ingress_rule.db_from_metadata,
  ]
}
