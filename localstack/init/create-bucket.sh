#!/bin/sh
# LocalStack init hook (ready.d): creates the bucket Strata uses in the compose setup.
# awslocal comes with the LocalStack image; the bucket name can be changed with
# STRATA_BUCKET_NAME in the container's environment.
set -eu
bucket="${STRATA_BUCKET_NAME:-strata}"
awslocal s3api head-bucket --bucket "$bucket" 2>/dev/null || awslocal s3 mb "s3://$bucket"
