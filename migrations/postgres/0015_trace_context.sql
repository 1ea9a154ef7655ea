-- The W3C `traceparent` of the unit of work that enqueued a job or wrote an event, so the
-- worker, the relay and subscribers continue that trace. NULL: written outside any trace.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
ALTER TABLE events ADD COLUMN traceparent TEXT;
