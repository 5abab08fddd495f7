-- The Admin Center's Actor filter by kind (README.md, "Audit log": Operator
-- or System): like every audit listing, one index seek ending in `id`.
CREATE INDEX audit_events_actor_type_idx ON audit_events (account_id, actor_type, id);
