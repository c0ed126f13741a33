-- The metadata leader's lease: one row. A process serves (and writes) only while it holds
-- the lease; every mutating transaction first checks, under a share lock of this row, that
-- the epoch it was granted is still the current one, so a deposed leader can never commit.
-- Expiry uses the database's clock (now()), the one clock every metadata process shares.
CREATE TABLE metadata_leader (
    id INT PRIMARY KEY CHECK (id = 1),
    -- raised by one at every takeover; 0 before the first
    epoch BIGINT NOT NULL,
    -- the holding process's instance id (new at every start)
    holder TEXT NOT NULL,
    -- the gRPC URL the holder advertises to agents and the CLI
    address TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO metadata_leader (id, epoch, holder, address, acquired_at, expires_at)
VALUES (1, 0, '', '', '-infinity', '-infinity');
