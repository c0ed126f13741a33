# A production-shaped Strata deployment: three availability zones with a NAT gateway each,
# agents in every zone with room to scale, two metadata tasks, and a Multi-AZ PostgreSQL
# with backups and deletion protection. It creates its own VPC; to use an existing one,
# drop module "network" and pass your VPC and private subnet IDs (one subnet per zone,
# with routes to S3 through a gateway endpoint and to the internet through NAT).

module "network" {
  source = "../../modules/network"

  name                    = var.name
  cidr_block              = var.vpc_cidr_block
  az_count                = 3
  nat_gateway_per_az      = true
  flow_log_retention_days = 90
}

module "strata" {
  source = "../../modules/strata"

  name        = var.name
  image       = var.image
  agent_image = var.agent_image

  vpc_id     = module.network.vpc_id
  subnet_ids = module.network.private_subnet_ids

  kafka_client_cidr_blocks           = var.kafka_client_cidr_blocks
  kafka_client_security_group_ids    = var.kafka_client_security_group_ids
  metadata_client_security_group_ids = var.metadata_client_security_group_ids

  metadata_cpu           = 1024
  metadata_memory        = 2048
  metadata_desired_count = 2

  # 2 vCPU per agent: about 100 MB/s of ingest each as a planning figure
  # (docs/deploy-aws.md, docs/benchmarks.md).
  agent_cpu              = 2048
  agent_memory           = 4096
  agent_read_cache_bytes = 1610612736
  agent_min_count        = var.agent_min_count
  agent_max_count        = var.agent_max_count

  agent_flush_interval     = "100ms"
  agent_auto_create_topics = false

  db_instance_class               = "db.m7g.large"
  db_allocated_storage            = 100
  db_max_allocated_storage        = 1000
  db_multi_az                     = true
  db_backup_retention_days        = 14
  db_deletion_protection          = true
  db_skip_final_snapshot          = false
  db_performance_insights_enabled = true
  db_monitoring_interval          = 30
  db_kms_key_arn                  = var.db_kms_key_arn

  bucket_kms_key_arn      = var.bucket_kms_key_arn
  nlb_deletion_protection = true
  log_retention_days      = 90
}
