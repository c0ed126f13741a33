# The Kafka bootstrap endpoint: an internal network load balancer on 9092 in front of the
# agents.
#
# Clients use it only to bootstrap. Each agent advertises its own task IP in Metadata
# responses (see ecs_agent.tf), so after the first request a client talks to agents
# directly and produce/fetch traffic does not pass through (or get billed on) the load
# balancer. The load balancer is internal for the same reason: clients must be able to
# reach the task IPs anyway, i.e. be inside this VPC or a network routed to it.
#
# Cross-zone load balancing is off, so a load balancer node only forwards to agents in its
# own availability zone. Together with the zonal DNS names (<zone>.<load balancer DNS>,
# output bootstrap_servers_by_zone) a client can bootstrap to an agent in its own zone and
# avoid cross-AZ transfer charges.

resource "aws_lb" "kafka" {
  #checkov:skip=CKV_AWS_152:Cross-zone load balancing is off on purpose: each load balancer node forwards only to agents in its own zone, which keeps client traffic in-zone (see above).
  #checkov:skip=CKV_AWS_150:Deletion protection is a variable (nlb_deletion_protection), on by default; the dev example turns it off so it can be destroyed.
  name                             = "${var.name}-kafka"
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.kafka_nlb.id]
  enable_cross_zone_load_balancing = false
  enable_deletion_protection       = var.nlb_deletion_protection
  tags                             = local.tags

  dynamic "access_logs" {
    for_each = var.nlb_access_logs_bucket == null ? [] : [var.nlb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "nlb/${var.name}-kafka"
      enabled = true
    }
  }
}

resource "aws_lb_target_group" "kafka" {
  name        = "${var.name}-kafka"
  port        = local.kafka_port
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  tags        = local.tags

  # ECS deregisters an agent and waits this long before sending SIGTERM.
  deregistration_delay = var.nlb_deregistration_delay

  # The HTTP /readyz endpoint (9095) is planned; until then the load balancer checks that
  # the Kafka port accepts TCP connections.
  health_check {
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "kafka" {
  load_balancer_arn = aws_lb.kafka.arn
  port              = local.kafka_port
  protocol          = "TCP"
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka.arn
  }
}
