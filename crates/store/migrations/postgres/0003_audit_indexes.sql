-- Indexes for listing the audit log (SPEC 6.3). A page is read in id order
-- (ids grow with time) after a cursor id, so every index ends with `id`:
-- with the equality filters as its prefix, a page is one index seek and a
-- short forward read, whatever the account's size. The unfiltered listing
-- uses audit_events_account_idx (account_id, id) from 0001.

-- filter[source_type], and filter[source_type] with filter[source_id]
-- ("View audit log" of one token).
CREATE INDEX audit_events_source_type_idx ON audit_events (account_id, source_type, id);
CREATE INDEX audit_events_source_idx ON audit_events (account_id, source_type, source_id, id);
-- filter[actor_id], filter[action], filter[ip_address].
CREATE INDEX audit_events_actor_idx ON audit_events (account_id, actor_id, id);
CREATE INDEX audit_events_action_idx ON audit_events (account_id, action, id);
CREATE INDEX audit_events_ip_idx ON audit_events (account_id, ip_address, id);
-- filter[created_at][]: a range read of the events in the window.
CREATE INDEX audit_events_created_idx ON audit_events (account_id, created_at);
