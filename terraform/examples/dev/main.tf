# A small, cheap Strata deployment for trying things out:
#   - compute in one availability zone (one subnet for the tasks and the load balancer),
#   - a single-AZ db.t4g.micro PostgreSQL (the subnet group still spans two zones, as RDS
#     requires),
#   - one NAT gateway, one metadata task, one or two agents,
#   - no deletion protection and no final snapshot: `terraform destroy` removes everything,
#     the bucket's objects included.

module "network" {
  source = "../../modules/network"

  name                    = var.name
  cidr_block              = "10.42.0.0/16"
  az_count                = 2
  nat_gateway_per_az      = false
  flow_log_retention_days = 7
}

module "strata" {
  source = "../../modules/strata"

  name  = var.name
  image = var.image

  vpc_id              = module.network.vpc_id
  subnet_ids          = [module.network.private_subnet_ids[0]]
  database_subnet_ids = module.network.private_subnet_ids

  kafka_client_security_group_ids = var.create_client_instance ? [aws_security_group.client[0].id] : []

  # Small and disposable.
  metadata_cpu           = 256
  metadata_memory        = 512
  metadata_desired_count = 1
  agent_cpu              = 1024
  agent_memory           = 2048
  agent_read_cache_bytes = 268435456
  agent_min_count        = 1
  agent_max_count        = 2

  agent_auto_create_topics = true
  log_level                = "info"
  log_retention_days       = 7

  db_instance_class               = "db.t4g.micro"
  db_allocated_storage            = 20
  db_max_allocated_storage        = 50
  db_multi_az                     = false
  db_backup_retention_days        = 1
  db_deletion_protection          = false
  db_skip_final_snapshot          = true
  db_apply_immediately            = true
  db_performance_insights_enabled = false
  db_monitoring_interval          = 0

  bucket_force_destroy    = true
  nlb_deletion_protection = false
}
