# The bucket is Strata's only durable store for records: agents upload segment objects
# under <prefix>/segments/ with create-only PUTs and read chunks back with ranged GETs.
# Which objects live and for how long is decided by Strata (topic retention, compaction,
# garbage collection of unreferenced objects), never by the bucket: an object deleted behind
# Strata's back is a hole in a partition's log. So the bucket has no expiration rule, only
# the cleanup of abandoned multipart uploads, which are invisible to Strata.

locals {
  bucket_name   = var.bucket_name != null ? var.bucket_name : "${var.name}-${local.account_id}-${local.region}"
  bucket_prefix = var.bucket_prefix
  use_kms       = var.bucket_kms_key_arn != null
}

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage and PUT cost; Strata's durability is S3's in-region durability. Add replication outside the module if a second region is required.
  #checkov:skip=CKV2_AWS_62:Nothing consumes event notifications for segment objects; one event per segment PUT would only add cost.
  #checkov:skip=CKV_AWS_21:Versioning is a variable (bucket_versioning), off by default: Strata never overwrites a key, so versions would only keep deleted segments billable (see aws_s3_bucket_versioning.data).
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    # ACLs are disabled; the bucket owner owns every object and access is IAM-only.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.bucket_kms_key_arn
    }
    # With SSE-KMS, a bucket key lets S3 reuse a data key instead of calling KMS for
    # every segment PUT and chunk GET.
    bucket_key_enabled = local.use_kms
  }
}

# Versioning is off by default. Strata never overwrites a key (every segment gets a new
# key and is written with a create-only PUT), so versioning cannot protect against an
# overwrite; its only effect would be to keep the objects that retention and GC delete,
# billed as noncurrent versions. Turn it on if deletes must be recoverable for a while;
# noncurrent versions then expire after bucket_noncurrent_version_expiration_days.
resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    # "Disabled" is only valid for a bucket that was never versioned; after enabling,
    # switch back by suspending it outside Terraform.
    status = var.bucket_versioning ? "Enabled" : "Disabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  # Parts of multipart uploads that were never completed (an agent killed mid-upload)
  # are billed but belong to no object; remove them. Completed objects are never expired
  # here: retention is Strata's job.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # Only with versioning on: drop the old versions of objects Strata deleted, and the
  # delete markers left behind. Current objects are untouched.
  dynamic "rule" {
    for_each = var.bucket_versioning ? [1] : []
    content {
      id     = "expire-deleted-versions"
      status = "Enabled"

      filter {}

      noncurrent_version_expiration {
        noncurrent_days = var.bucket_noncurrent_version_expiration_days
      }

      expiration {
        expired_object_delete_marker = true
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_logging" "data" {
  count = var.bucket_access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.data.id
  target_bucket = var.bucket_access_log_bucket
  target_prefix = "s3/${local.bucket_name}/"
}

data "aws_iam_policy_document" "bucket" {
  # Refuse every request that does not use TLS.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # And TLS older than 1.2.
  statement {
    sid       = "DenyOutdatedTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket.json

  # Put the public access block first, so the policy is never evaluated without it.
  depends_on = [aws_s3_bucket_public_access_block.data]
}
