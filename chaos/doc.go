// Package chaos proves the pipeline's promise under fire: every webhook
// ingest acknowledged is stored exactly once, in events and in every derived
// table, while every component is killed with SIGKILL at random times.
//
// Everything is in the tests (TestChaos): the real lcpipe binary runs as two
// ingest instances and two processors in one consumer group, on a private
// Kafka broker and a private ClickHouse server (internal/testenv), so killing
// them never disturbs other tests. The simulator (internal/simulate) drives
// LiveChat traffic through both ingests, retrying non-200 answers as
// LiveChat does, while a seeded fault plan kills and restarts ingest, the
// processors, Kafka and ClickHouse. Afterwards, once drained, the stored
// events are compared with what the simulator got 200 for and with what the
// raw topic says should be stored.
//
// `go test ./chaos` runs the short CI form (50 000 webhooks, shortened
// outages); `make chaos` the full one (1 000 000 webhooks, a Kafka outage
// over 60 s). CHAOS_* variables size it (see config_test.go).
package chaos
