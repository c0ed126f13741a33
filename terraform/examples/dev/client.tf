# A client host inside the VPC: Ubuntu with kcat, no SSH key and no inbound rules. Open a
# shell with `aws ssm start-session --target <client_instance_id>`.

data "aws_ami" "ubuntu" {
  count = var.create_client_instance ? 1 : 0

  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_security_group" "client" {
  count = var.create_client_instance ? 1 : 0

  name_prefix = "${var.name}-client-"
  description = "Kafka test client of ${var.name}"
  vpc_id      = module.network.vpc_id
  tags        = { Name = "${var.name}-client" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "client_kafka" {
  count = var.create_client_instance ? 1 : 0

  security_group_id = aws_security_group.client[0].id
  description       = "Kafka to the load balancer and the agents"
  ip_protocol       = "tcp"
  from_port         = 9092
  to_port           = 9092
  cidr_ipv4         = module.network.vpc_cidr_block
}

resource "aws_vpc_security_group_egress_rule" "client_https" {
  count = var.create_client_instance ? 1 : 0

  security_group_id = aws_security_group.client[0].id
  description       = "HTTPS: SSM Session Manager, package mirrors"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "client_http" {
  count = var.create_client_instance ? 1 : 0

  security_group_id = aws_security_group.client[0].id
  description       = "HTTP: Ubuntu package mirrors"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

data "aws_iam_policy_document" "client_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "client" {
  count = var.create_client_instance ? 1 : 0

  name_prefix        = "${var.name}-client-"
  assume_role_policy = data.aws_iam_policy_document.client_assume.json
}

resource "aws_iam_role_policy_attachment" "client_ssm" {
  count = var.create_client_instance ? 1 : 0

  role       = aws_iam_role.client[0].name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "client" {
  count = var.create_client_instance ? 1 : 0

  name_prefix = "${var.name}-client-"
  role        = aws_iam_role.client[0].name
}

resource "aws_instance" "client" {
  #checkov:skip=CKV_AWS_126:Detailed monitoring is not worth its cost on a throwaway test client.
  count = var.create_client_instance ? 1 : 0

  ami                    = data.aws_ami.ubuntu[0].id
  instance_type          = "t3.micro"
  subnet_id              = module.network.private_subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.client[0].id]
  iam_instance_profile   = aws_iam_instance_profile.client[0].name
  ebs_optimized          = true
  monitoring             = false

  user_data = <<-EOT
    #!/bin/sh
    set -eu
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y kcat
  EOT

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  root_block_device {
    encrypted   = true
    volume_type = "gp3"
    volume_size = 8
  }

  tags = { Name = "${var.name}-client" }
}
