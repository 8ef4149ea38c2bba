// Package chconn is the one place that opens ClickHouse connections. It
// speaks the native protocol only: the HTTP transport of clickhouse-go sends a
// setting that ClickHouse 18.16 (the Debian server used locally) rejects.
package chconn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

// Config is the ClickHouse part of a component's configuration.
type Config struct {
	// Addr is host:port of the native protocol. Default 127.0.0.1:9000.
	Addr []string
	// Database holds the pipeline's tables. Default livechat.
	Database string
	// User and Password; default user "default" with no password.
	User     string
	Password secret.Secret
	// Cluster, when set, makes migrations use ON CLUSTER and Replicated engines.
	Cluster string
	// DialTimeout and ReadTimeout bound each connection attempt and query.
	// Defaults 5s and 5m.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// MaxOpenConns bounds the pool. Default 8.
	MaxOpenConns int
	// TLS, off by default, connects to the secure native port (9440 on
	// ClickHouse Cloud and most servers) instead of the plaintext one.
	TLS tlsconf.Config
}

// tlsNames are the variables the TLS settings come from, for errors.
var tlsNames = tlsconf.NamesFor("CLICKHOUSE_TLS", "server")

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Addr:         []string{"127.0.0.1:9000"},
		Database:     "livechat",
		User:         "default",
		DialTimeout:  5 * time.Second,
		ReadTimeout:  5 * time.Minute,
		MaxOpenConns: 8,
	}
}

// withDefaults fills the zero fields of the connection's tuning with the
// defaults documented on Config. Addr and Database say where to connect,
// so they have no default here: Validate refuses them empty.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.User = cmp.Or(c.User, d.User)
	c.DialTimeout = cmp.Or(c.DialTimeout, d.DialTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, d.ReadTimeout)
	c.MaxOpenConns = cmp.Or(c.MaxOpenConns, d.MaxOpenConns)
	return c
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, errors.New("clickhouse: no address (CLICKHOUSE_ADDR)"))
	}
	if !ValidIdent(c.Database) {
		errs = append(errs, fmt.Errorf("clickhouse: database name %q must match [A-Za-z_][A-Za-z0-9_]*", c.Database))
	}
	if c.Cluster != "" && !ValidIdent(c.Cluster) {
		errs = append(errs, fmt.Errorf("clickhouse: cluster name %q must match [A-Za-z_][A-Za-z0-9_]*", c.Cluster))
	}
	if err := c.TLS.Validate(tlsNames); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse: %w", err))
	}
	return errors.Join(errs...)
}

// ValidIdent reports whether s can be used unquoted as a database or cluster name.
func ValidIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// Open connects without selecting a database (migrations create it) and
// checks the server answers. With TLS on, a failed handshake is a
// *tlsconf.SettingError naming the setting to fix (CLICKHOUSE_TLS_CA_FILE
// when the CA does not trust the server's certificate).
func Open(ctx context.Context, cfg Config) (driver.Conn, error) {
	cfg = cfg.withDefaults()
	opts := &ch.Options{
		Protocol: ch.Native,
		Addr:     cfg.Addr,
		Auth: ch.Auth{
			Database: "default",
			Username: cfg.User,
			Password: cfg.Password.Reveal(),
		},
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
	}
	tc, err := cfg.TLS.Load(tlsNames)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if tc != nil {
		// Our own dialer rather than Options.TLS: it honours ctx and
		// reports handshake failures by setting (tlsconf.Explain).
		dial := tlsconf.Dialer(&net.Dialer{Timeout: cfg.DialTimeout}, tc, cfg.TLS, tlsNames)
		opts.DialContext = func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", strings.Join(cfg.Addr, ","), err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		if cfg.TLS.Enabled {
			err = tlsconf.Refused(err, tlsNames)
		}
		return nil, fmt.Errorf("clickhouse: ping %s: %w", strings.Join(cfg.Addr, ","), err)
	}
	return conn, nil
}
