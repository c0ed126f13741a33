-- Strata metadata schema, version 3: retention and the collection of unreferenced objects.
-- (Version 2 is the metadata leader lease.)
--
-- A committed segment object whose every index row is gone (trimmed below its partitions'
-- log starts, or of deleted topics) is recorded here. `unreferenced_since_ms` is NULL
-- until the first listing stamps it with the metadata service's clock; the object's grace
-- period counts from that stamp. Rows of `chunks` are only ever inserted by the commit of
-- their own object, so an object recorded here is never referenced again.
CREATE TABLE unreferenced_objects (
    object_key TEXT COLLATE "C" PRIMARY KEY,
    unreferenced_since_ms BIGINT
);
CREATE INDEX unreferenced_objects_by_time ON unreferenced_objects (unreferenced_since_ms);

-- Objects that lost their last index row before this version (topics deleted earlier).
INSERT INTO unreferenced_objects (object_key, unreferenced_since_ms)
SELECT s.object_key, NULL FROM segments s
WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = s.object_key);
