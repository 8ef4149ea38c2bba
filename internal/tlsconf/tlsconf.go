// Package tlsconf turns the TLS settings of a connection to a server (on or
// off, CA file, client certificate, server name) into a *tls.Config, and
// dials with it so that a failed handshake is reported by the setting that
// causes it ("KAFKA_TLS_CA_FILE does not trust the broker's certificate")
// rather than by x509's wording alone.
//
// Kafka (internal/kafka) and ClickHouse (internal/chconn) both use it, each
// with the prefix of its environment variables (KAFKA_TLS,
// CLICKHOUSE_TLS), so their TLS settings read and fail alike.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Config is the TLS part of a client's configuration.
type Config struct {
	// Enabled dials with TLS. Default off. Managed services (Confluent
	// Cloud, MSK, Aiven, ClickHouse Cloud) require it.
	Enabled bool
	// CAFile is a PEM file of the certificate authorities that sign the
	// server's certificate. Default: the system's roots, which trust the
	// public CAs managed services use; a private CA (Aiven's project CA,
	// a self-signed server) needs this.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate (chain) and its
	// unencrypted private key, for servers that require one (mutual TLS,
	// Aiven's client-certificate authentication). Both or neither.
	// Default none.
	CertFile string
	KeyFile  string
	// ServerName is the name the server's certificate must carry. Default:
	// the host of the address dialled. Set it when connecting through an IP
	// address, a tunnel or a load balancer whose name differs.
	ServerName string
}

// Names are the setting names errors mention: the environment variables the
// command reads the Config from (prefix KAFKA_TLS: KAFKA_TLS,
// KAFKA_TLS_CA_FILE, ...).
type Names struct {
	Enabled, CAFile, CertFile, KeyFile, ServerName string
	// Peer is what the other end is called in messages ("broker", "server").
	Peer string
}

// NamesFor returns the setting names for an environment prefix.
func NamesFor(prefix, peer string) Names {
	return Names{
		Enabled:    prefix,
		CAFile:     prefix + "_CA_FILE",
		CertFile:   prefix + "_CERT_FILE",
		KeyFile:    prefix + "_KEY_FILE",
		ServerName: prefix + "_SERVER_NAME",
		Peer:       peer,
	}
}

// Validate reports every problem of the configuration at once, without
// reading the files (Load does).
func (c Config) Validate(n Names) error {
	var errs []error
	if !c.Enabled {
		// A CA or certificate given with TLS off would silently connect in
		// plaintext: refuse, the operator meant TLS.
		for _, s := range []struct{ name, v string }{{n.CAFile, c.CAFile}, {n.CertFile, c.CertFile}, {n.KeyFile, c.KeyFile}, {n.ServerName, c.ServerName}} {
			if s.v != "" {
				errs = append(errs, fmt.Errorf("%s is set but %s is off: set %s=true to connect with TLS", s.name, n.Enabled, n.Enabled))
			}
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together: a client certificate needs its key", n.CertFile, n.KeyFile))
	}
	return errors.Join(errs...)
}

// Load reads the files and returns the *tls.Config to dial with, or nil
// when TLS is off. Errors name the setting whose file is missing or wrong.
func (c Config) Load(n Names) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	if err := c.Validate(n); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", n.CAFile, c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", n.CertFile, n.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Dialer returns a dial function that connects with tc (through nd) and
// explains a failed handshake with Explain.
func Dialer(nd *net.Dialer, tc *tls.Config, c Config, n Names) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: nd, Config: tc}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, Explain(err, addr, c, n)
		}
		return conn, nil
	}
}

// SettingError is a connection failure that a setting causes or can fix:
// Setting names it, Problem says what is wrong, Err is the cause.
type SettingError struct {
	Setting string
	Problem string
	Err     error
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Setting, e.Problem, e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }

// Explain wraps a TLS handshake error of a connection to addr in a
// *SettingError naming the setting to look at; other errors come back
// unchanged.
func Explain(err error, addr string, c Config, n Names) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		recordHdr tls.RecordHeaderError
		opErr     *net.OpError
		already   *SettingError
	)
	cert := "the " + n.Peer + "'s certificate" // "the broker's certificate (at host:port)"
	at := ""
	if addr != "" {
		at = " at " + addr
	}
	switch {
	case errors.As(err, &already):
		return err
	case errors.As(err, &unknownCA):
		if c.CAFile == "" {
			return &SettingError{n.CAFile, fmt.Sprintf("is not set and the system's CAs do not trust %s %s: set it to the CA that signs it",
				cert, details(addr, "issued by "+issuer(unknownCA.Cert))), err}
		}
		return &SettingError{n.CAFile, fmt.Sprintf("does not trust %s %s", cert, details(addr, "issued by "+issuer(unknownCA.Cert))), err}
	case errors.As(err, &hostname):
		name := c.ServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(addr)
		}
		return &SettingError{n.ServerName, fmt.Sprintf("%q does not match %s %s: set %s to a name it carries",
			name, cert, details(addr, "valid for "+certNames(hostname.Certificate)), n.ServerName), err}
	case errors.As(err, &invalid):
		return &SettingError{n.CAFile, fmt.Sprintf("cannot verify %s%s: expired, not yet valid or not a server certificate", cert, at), err}
	case errors.As(err, &verify):
		return &SettingError{n.CAFile, fmt.Sprintf("cannot verify %s%s", cert, at), err}
	case errors.As(err, &recordHdr):
		return &SettingError{n.Enabled, fmt.Sprintf("is on but the %s%s does not answer in TLS (a plaintext port?)", n.Peer, at), err}
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// The server sent an alert: on a handshake that got this far, it
		// refused our certificate (or our lack of one).
		if c.CertFile == "" {
			return &SettingError{n.CertFile, fmt.Sprintf("is not set and the %s%s refused the TLS session: does it require a client certificate?", n.Peer, at), err}
		}
		return &SettingError{n.CertFile, fmt.Sprintf("was refused by the %s%s (not signed by a CA it trusts, or expired?)", n.Peer, at), err}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		// Refused or timed out before TLS started: not a TLS matter.
		return err
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		// A peer that closes mid-handshake shows as EOF or, when it had
		// unread bytes of ours, as a reset: the same answer.
		return &SettingError{n.Enabled, fmt.Sprintf("is on but the %s%s closed the connection during the TLS handshake (a plaintext port?)", n.Peer, at), err}
	}
	return err
}

// Refused wraps err in a *SettingError naming the client certificate
// setting when it is a TLS alert from the server; other errors come back
// unchanged.
//
// Why it is needed beside Explain: with TLS 1.3 the server checks the
// client's certificate after the client considers the handshake done, so a
// missing or untrusted client certificate shows as an alert on the first
// read, in the client library's code rather than in Dialer.
func Refused(err error, n Names) error {
	var (
		opErr   *net.OpError
		already *SettingError
	)
	if errors.As(err, &already) || !errors.As(err, &opErr) || opErr.Op != "remote error" {
		return err
	}
	return &SettingError{n.CertFile, fmt.Sprintf("(or its absence) was refused by the %s: does it require a client certificate, signed by a CA it trusts?", n.Peer), err}
}

// details puts the non-empty parts in parentheses: "(host:port, issued by X)".
func details(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return "(" + strings.Join(out, ", ") + ")"
}

func issuer(c *x509.Certificate) string {
	if c == nil {
		return "?"
	}
	return c.Issuer.String()
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "?"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("%q only, no subject alternative names", c.Subject.CommonName)
	}
	return strings.Join(names, " ")
}
