package chaos

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// config sizes one chaos run. The zero value is not usable: start from
// ciConfig or fullConfig (CHAOS_FULL=1), then apply CHAOS_* overrides.
type config struct {
	Full bool
	// Webhooks is how many deliveries the simulator makes (first attempts,
	// its own same-body retries included). Rate paces them (per second).
	Webhooks int
	Rate     float64
	// Speedup is simulated seconds per real second: a thread that lasts
	// ten simulated minutes is sent within 10m/Speedup.
	Speedup float64
	// RetryRate is the share of deliveries the simulator sends twice.
	RetryRate float64
	Seed      uint64
	// Kills is how often each component is killed with SIGKILL.
	Kills int
	// Pause bounds the random pause before a killed component restarts.
	PauseMin, PauseMax time.Duration
	// KafkaLong and ClickHouseLong are the lengths of the one long outage
	// of each (the pause before the restart; the restart adds its own time).
	KafkaLong, ClickHouseLong time.Duration
	// Session is the processors' KAFKA_SESSION_TIMEOUT; KafkaTimeout is
	// ingest's INGEST_KAFKA_TIMEOUT.
	Session, KafkaTimeout time.Duration
	// Workers is the sender's concurrency; Drain bounds the wait for the
	// pipeline to settle after the load.
	Workers int
	Drain   time.Duration
}

// ciConfig is the short form `go test ./...` runs (about 3 minutes): the
// same faults, shorter outages. The Kafka outage is longer than
// INGEST_KAFKA_TIMEOUT (so ingest spools) but not 60 s; the ClickHouse
// outage is longer than the session timeout.
func ciConfig() config {
	return config{
		Webhooks: 50_000, Rate: 600, Speedup: 60, RetryRate: 0.2,
		Kills: 3, PauseMin: 500 * time.Millisecond, PauseMax: 4 * time.Second,
		KafkaLong: 15 * time.Second, ClickHouseLong: 14 * time.Second,
		Session: 8 * time.Second, KafkaTimeout: 2 * time.Second,
		Workers: 96, Drain: 6 * time.Minute,
	}
}

// fullConfig is `make chaos`: 1M webhooks, a Kafka outage over 60 s.
func fullConfig() config {
	return config{
		Full:     true,
		Webhooks: 1_000_000, Rate: 1500, Speedup: 20, RetryRate: 0.2,
		Kills: 3, PauseMin: time.Second, PauseMax: 20 * time.Second,
		KafkaLong: 75 * time.Second, ClickHouseLong: 30 * time.Second,
		Session: 10 * time.Second, KafkaTimeout: 2 * time.Second,
		Workers: 128, Drain: 20 * time.Minute,
	}
}

// loadConfig reads CHAOS_FULL and the CHAOS_* overrides.
func loadConfig() (config, error) {
	c := ciConfig()
	if os.Getenv("CHAOS_FULL") == "1" {
		c = fullConfig()
	}
	c.Seed = uint64(time.Now().UnixNano())
	var errs []error
	intVar := func(name string, p *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a whole number", name, v))
				return
			}
			*p = n
		}
	}
	floatVar := func(name string, p *float64) {
		if v := os.Getenv(name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a positive number", name, v))
				return
			}
			*p = f
		}
	}
	durVar := func(name string, p *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a Go duration", name, v))
				return
			}
			*p = d
		}
	}
	intVar("CHAOS_WEBHOOKS", &c.Webhooks)
	floatVar("CHAOS_RATE", &c.Rate)
	floatVar("CHAOS_SPEEDUP", &c.Speedup)
	intVar("CHAOS_KILLS", &c.Kills)
	intVar("CHAOS_WORKERS", &c.Workers)
	durVar("CHAOS_KAFKA_OUTAGE", &c.KafkaLong)
	durVar("CHAOS_CLICKHOUSE_OUTAGE", &c.ClickHouseLong)
	durVar("CHAOS_SESSION_TIMEOUT", &c.Session)
	durVar("CHAOS_DRAIN", &c.Drain)
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAOS_SEED=%q: want a whole number", v))
		}
		c.Seed = s
	}
	if c.Kills < 1 {
		errs = append(errs, fmt.Errorf("CHAOS_KILLS must be at least 1"))
	}
	if c.ClickHouseLong <= c.Session {
		errs = append(errs, fmt.Errorf("the ClickHouse outage (%s) must be longer than the session timeout (%s)", c.ClickHouseLong, c.Session))
	}
	if c.KafkaLong <= c.KafkaTimeout {
		errs = append(errs, fmt.Errorf("the Kafka outage (%s) must be longer than INGEST_KAFKA_TIMEOUT (%s)", c.KafkaLong, c.KafkaTimeout))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("chaos: %v", errs)
	}
	return c, nil
}

// loadDuration is how long sending the planned webhooks takes at Rate.
func (c config) loadDuration() time.Duration {
	return time.Duration(float64(c.Webhooks) / c.Rate * float64(time.Second))
}
