-- `leader` and `primary` (docs/strategies.md): a device that does not encrypt hands
-- what is typed on it to the one that does through the log (`ForwardRequested`); every
-- device keeps the message pending until its `Sent` folds. `requested`: the log holds
-- the request (the row came from the fold, or this device's request was folded).
ALTER TABLE pending_sends ADD COLUMN requested INTEGER NOT NULL DEFAULT 0;

-- `primary`: the incoming messages (by `messages.id`) the primary has written to the log
-- for its siblings (`Received`), so a crash between decrypting and logging loses none.
ALTER TABLE constellation ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
