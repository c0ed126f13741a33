# Who may talk to whom:
#
#   Kafka clients (CIDRs / SGs) --9092--> load balancer --9092--> agents
#   Kafka clients (CIDRs / SGs) --9092--> agents (direct, after bootstrap)
#   agents --9093--> metadata        agents <--9094--> agents (cache peers)
#   metadata --5432--> database
#   VPC (metrics_cidr_blocks) --9095--> agents, --9096--> metadata
#   agents, metadata --443--> S3, ECR, CloudWatch Logs, Secrets Manager
#
# Security groups have no inline rules; each rule is its own resource. Rules built from
# lists are keyed by list position, so the lists may hold IDs that are only known after
# apply (e.g. a client security group created in the same configuration).

resource "aws_security_group" "kafka_nlb" {
  name_prefix = "${var.name}-kafka-nlb-"
  description = "Kafka load balancer of ${var.name}: 9092 from clients to the agents"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-kafka-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "agent" {
  name_prefix = "${var.name}-agent-"
  description = "Strata agents of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-agent" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "metadata" {
  name_prefix = "${var.name}-metadata-"
  description = "Strata metadata service of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-metadata" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-db-"
  description = "Metadata database of ${var.name}: 5432 from the metadata tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-db" })

  lifecycle {
    create_before_destroy = true
  }
}

# --- Kafka load balancer ------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "kafka_nlb_from_cidr" {
  for_each = { for i, v in var.kafka_client_cidr_blocks : tostring(i) => v }

  security_group_id = aws_security_group.kafka_nlb.id
  description       = "Kafka clients in ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.kafka_port
  to_port           = local.kafka_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "kafka_nlb_from_sg" {
  for_each = { for i, v in var.kafka_client_security_group_ids : tostring(i) => v }

  security_group_id            = aws_security_group.kafka_nlb.id
  description                  = "Kafka clients in ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = local.kafka_port
  to_port                      = local.kafka_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "kafka_nlb_to_agent" {
  security_group_id            = aws_security_group.kafka_nlb.id
  description                  = "Forward Kafka connections and health checks to the agents"
  ip_protocol                  = "tcp"
  from_port                    = local.kafka_port
  to_port                      = local.kafka_port
  referenced_security_group_id = aws_security_group.agent.id
}

# --- Agents ---------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "agent_from_nlb" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Kafka bootstrap connections and health checks from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.kafka_port
  to_port                      = local.kafka_port
  referenced_security_group_id = aws_security_group.kafka_nlb.id
}

resource "aws_vpc_security_group_ingress_rule" "agent_from_cidr" {
  for_each = { for i, v in var.kafka_client_cidr_blocks : tostring(i) => v }

  security_group_id = aws_security_group.agent.id
  description       = "Kafka clients in ${each.value} (direct, after bootstrap)"
  ip_protocol       = "tcp"
  from_port         = local.kafka_port
  to_port           = local.kafka_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "agent_from_sg" {
  for_each = { for i, v in var.kafka_client_security_group_ids : tostring(i) => v }

  security_group_id            = aws_security_group.agent.id
  description                  = "Kafka clients in ${each.value} (direct, after bootstrap)"
  ip_protocol                  = "tcp"
  from_port                    = local.kafka_port
  to_port                      = local.kafka_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_ingress_rule" "agent_cache_peers" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Read-cache peer protocol between agents"
  ip_protocol                  = "tcp"
  from_port                    = local.cache_peer_port
  to_port                      = local.cache_peer_port
  referenced_security_group_id = aws_security_group.agent.id
}

resource "aws_vpc_security_group_ingress_rule" "agent_metrics" {
  for_each = { for i, v in local.metrics_cidr_blocks : tostring(i) => v }

  security_group_id = aws_security_group.agent.id
  description       = "Metrics and health endpoints from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.agent_http_port
  to_port           = local.agent_http_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "agent_to_metadata" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Metadata service gRPC"
  ip_protocol                  = "tcp"
  from_port                    = local.metadata_port
  to_port                      = local.metadata_port
  referenced_security_group_id = aws_security_group.metadata.id
}

resource "aws_vpc_security_group_egress_rule" "agent_to_cache_peers" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Read-cache peer protocol between agents"
  ip_protocol                  = "tcp"
  from_port                    = local.cache_peer_port
  to_port                      = local.cache_peer_port
  referenced_security_group_id = aws_security_group.agent.id
}

resource "aws_vpc_security_group_egress_rule" "agent_https" {
  security_group_id = aws_security_group.agent.id
  description       = "HTTPS to S3, ECR and CloudWatch Logs (through the S3 gateway endpoint, NAT or interface endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# --- Metadata service -------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "metadata_from_agent" {
  security_group_id            = aws_security_group.metadata.id
  description                  = "gRPC from the agents"
  ip_protocol                  = "tcp"
  from_port                    = local.metadata_port
  to_port                      = local.metadata_port
  referenced_security_group_id = aws_security_group.agent.id
}

resource "aws_vpc_security_group_ingress_rule" "metadata_from_clients" {
  for_each = { for i, v in var.metadata_client_security_group_ids : tostring(i) => v }

  security_group_id            = aws_security_group.metadata.id
  description                  = "gRPC from ${each.value} (operators)"
  ip_protocol                  = "tcp"
  from_port                    = local.metadata_port
  to_port                      = local.metadata_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_ingress_rule" "metadata_metrics" {
  for_each = { for i, v in local.metrics_cidr_blocks : tostring(i) => v }

  security_group_id = aws_security_group.metadata.id
  description       = "Metrics and health endpoints from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.metadata_http_port
  to_port           = local.metadata_http_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "metadata_to_db" {
  security_group_id            = aws_security_group.metadata.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = local.db_port
  to_port                      = local.db_port
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_egress_rule" "metadata_https" {
  security_group_id = aws_security_group.metadata.id
  description       = "HTTPS to ECR, CloudWatch Logs and Secrets Manager"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# --- Database ---------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "db_from_metadata" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the metadata tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.db_port
  to_port                      = local.db_port
  referenced_security_group_id = aws_security_group.metadata.id
}
