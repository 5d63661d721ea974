-- The change log's sequence numbers are handed out from one counter row, inside the writing
-- transaction: a writer holds the row until it commits, so the next writer's number is only
-- handed out after that commit. Numbers are therefore given in commit order, with no gaps (a
-- rolled-back transaction gives its number back). A follower that has read up to N never
-- misses a row committed later with a number at or below N. SQLite's single writer gave this
-- already; the counter makes it the schema's contract, which a PostgreSQL backend keeps with
-- the same statements (its sequences are not commit-ordered).
CREATE TABLE change_sequence (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0)
);
INSERT INTO change_sequence (id, seq)
    SELECT 1, MAX(
        COALESCE((SELECT MAX(seq) FROM change_log), 0),
        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0)
    );
