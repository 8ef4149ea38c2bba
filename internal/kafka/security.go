package kafka

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

// SASL mechanisms SASLConfig.Mechanism accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLConfig is how clients authenticate to the brokers.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (case does not
	// matter); empty (the default) means no SASL. Confluent Cloud uses
	// PLAIN with an API key and secret, MSK and Aiven SCRAM-SHA-512 or
	// SCRAM-SHA-256. PLAIN sends the password as is: use it with TLS only.
	Mechanism string
	// Username and Password of the SASL user.
	Username string
	Password secret.Secret
}

// tlsNames are the variables the TLS settings come from, for errors.
var tlsNames = tlsconf.NamesFor("KAFKA_TLS", "broker")

// Setting names of the SASL configuration, for errors.
const (
	envSASLMechanism = "KAFKA_SASL_MECHANISM"
	envSASLUsername  = "KAFKA_SASL_USERNAME"
	envSASLPassword  = "KAFKA_SASL_PASSWORD"
)

// mechanism returns the normalized mechanism name.
func (s SASLConfig) mechanism() string { return strings.ToUpper(strings.TrimSpace(s.Mechanism)) }

// validateSecurity reports the problems of the TLS and SASL settings.
func (c Config) validateSecurity() error {
	var errs []error
	if err := c.TLS.Validate(tlsNames); err != nil {
		errs = append(errs, fmt.Errorf("kafka: %w", err))
	}
	switch m := c.SASL.mechanism(); m {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			errs = append(errs, fmt.Errorf("kafka: %s or %s is set but %s is empty: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
				envSASLUsername, envSASLPassword, envSASLMechanism))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("kafka: %s %s needs %s", envSASLMechanism, m, envSASLUsername))
		}
		if c.SASL.Password == "" {
			errs = append(errs, fmt.Errorf("kafka: %s %s needs %s", envSASLMechanism, m, envSASLPassword))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka: %s %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", envSASLMechanism, c.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

// securityOpts returns the client options for TLS and SASL (none when both
// are off). The TLS dialer reports a failed handshake by the setting to fix
// (tlsconf.Explain), so whatever request first connects carries that error.
func (c Config) securityOpts(dialTimeout time.Duration) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tc, err := c.TLS.Load(tlsNames)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if tc != nil {
		opts = append(opts, kgo.Dialer(tlsconf.Dialer(&net.Dialer{Timeout: dialTimeout}, tc, c.TLS, tlsNames)))
	}
	if m := c.SASL.mechanism(); m != "" {
		user, pass := c.SASL.Username, c.SASL.Password.Reveal()
		var mech sasl.Mechanism
		switch m {
		case SASLPlain:
			mech = plain.Auth{User: user, Pass: pass}.AsMechanism()
		case SASLScramSHA256:
			mech = scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
		case SASLScramSHA512:
			mech = scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
		default:
			return nil, c.validateSecurity()
		}
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// SettingError is a failure to connect that a setting causes, naming it:
// a password the broker rejects, a CA that does not trust its certificate.
// Retrying does not help; commands that cannot work without Kafka stop on
// it (errors.As).
type SettingError = tlsconf.SettingError

// Explain returns err wrapped in a *SettingError when a setting causes it
// (the SASL credentials, mechanism or the client certificate), else err
// unchanged. TLS handshake failures already carry one (NewClient's
// dialer); Ping and EnsureTopics explain their errors, other callers of
// the client (produce, fetch) can use it before logging an error.
func Explain(err error) error {
	var (
		already *SettingError
		eof     *kgo.ErrFirstReadEOF
	)
	switch {
	case errors.As(err, &eof) && errors.As(eof, &already):
		// franz-go's guess at an immediate EOF ("is TLS misconfigured?")
		// hides the handshake error our dialer explained.
		return already
	case err == nil || errors.As(err, &already):
		return err
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return &SettingError{Setting: envSASLPassword,
			Problem: fmt.Sprintf("rejected by the broker (or %s unknown to it, or without credentials for %s)", envSASLUsername, envSASLMechanism),
			Err:     err}
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return &SettingError{Setting: envSASLMechanism, Problem: "is not enabled on the broker's listener", Err: err}
	case errors.Is(err, kerr.IllegalSaslState):
		return &SettingError{Setting: envSASLMechanism, Problem: "is set but the broker's listener does not expect SASL (a SSL or PLAINTEXT listener?)", Err: err}
	}
	return tlsconf.Refused(err, tlsNames)
}
