-- This store's Baton identity (the counterpart of migrations/postgres/0010): Redis keys and
-- bus channels carry it, so stores sharing a Redis never share a cached entry.
CREATE TABLE baton_instance (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    id       TEXT NOT NULL
);
INSERT INTO baton_instance (only_row, id) VALUES (1, lower(hex(randomblob(16))));
