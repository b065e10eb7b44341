-- A linked device's history archive still to import (issue 13 item 6): the chunks'
-- blob ids in order, each with the archive key (sealed). A row goes in the transaction
-- that imports its chunk, so an interrupted link resumes at the next chunk.
CREATE TABLE history_import (
    ord    INTEGER PRIMARY KEY,
    blob   BLOB NOT NULL,
    sealed BLOB NOT NULL
);
