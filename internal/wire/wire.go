// Package wire is the contract of a raw-topic record between ingest (the
// writer) and processor, replay and audit tools (the readers): the record key,
// the header names and how their values are encoded. Changing anything here
// changes what old records mean, so only add.
package wire

import (
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names on every raw-topic record.
const (
	// HeaderReceivedAt is when ingest received the request, RFC 3339 with
	// nanoseconds, UTC. The processor's windowed de-duplication and every
	// "received" timestamp derive from it, so replays decide the same way.
	HeaderReceivedAt = "received-at"
	// HeaderRequestID is ingest's request id (also returned to the caller).
	HeaderRequestID = "request-id"
	// HeaderRemoteAddr is the client address as ingest saw it.
	HeaderRemoteAddr = "remote-addr"
	// HeaderBodySHA256 is the hex SHA-256 of the record value (the body with
	// its secret blanked), so audits can check the bytes were not altered.
	HeaderBodySHA256 = "body-sha256"
	// HeaderAction is the webhook's action field.
	HeaderAction = "action"
	// HeaderOrganization is the webhook's organization: its organization_id,
	// or, for a LiveChat v3.3 body (license_id only), the installed
	// organization ingest found holding that license; "" when unknown.
	HeaderOrganization = "organization-id"
	// HeaderLicense is the webhook's license_id in decimal, present only when
	// the body carries one (v3.3 bodies carry it instead of organization_id).
	HeaderLicense = "license-id"
	// HeaderIngestVersion is the ingest build that wrote the record.
	HeaderIngestVersion = "ingest-version"
	// HeaderAuth records how the secret was verified: see Auth* values.
	HeaderAuth = "auth"
	// HeaderSpooled is "1" when the record went through the local spool
	// because Kafka was away when the webhook arrived.
	HeaderSpooled = "spooled"
	// HeaderTraceparent and HeaderTracestate carry W3C trace context.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Values of HeaderAuth.
const (
	AuthStaticSecret       = "static-secret"       // matched LIVECHAT_WEBHOOK_SECRETS
	AuthInstallationSecret = "installation-secret" // matched the secret registered at install
)

// Dead-letter headers added by the processor (the original headers are kept too).
const (
	HeaderDLQError     = "dlq-error"
	HeaderDLQStage     = "dlq-stage"
	HeaderDLQTopic     = "dlq-source-topic"
	HeaderDLQPartition = "dlq-source-partition"
	HeaderDLQOffset    = "dlq-source-offset"
	HeaderDLQAt        = "dlq-at"
)

// HeaderRedriven marks a raw-topic record that `lcpipe dlq redrive` sent
// back from the dead-letter topic; its value is the dead letter's
// "topic:partition:offset". When such a record fails again, the processor's
// dead letter keeps the header (it copies every original header), so the
// dead-letter topic shows it failed after a redrive, and redrive does not
// send it again unless asked (--include-redriven): no loop.
const HeaderRedriven = "redriven"

// IsDLQHeader reports the headers the processor (or ingest) adds to a dead
// letter; a redrive strips them so a new failure carries one fresh set.
func IsDLQHeader(name string) bool { return strings.HasPrefix(name, "dlq-") }

// Key is the record key: tenant and the entity the event is about, so
// retries and all events of one chat land in one partition in order. The
// tenant is the organization, or LicenseTenant when only the license is
// known.
func Key(organizationID, entity string) []byte {
	if entity == "" {
		entity = organizationID
	}
	return []byte(organizationID + "/" + entity)
}

// LicenseTenant is the tenant of a webhook whose organization is unknown
// (a v3.3 body of a license no installation is known to hold):
// "license:<id>", the text livechat.Envelope.Tenant gives such a body.
func LicenseTenant(licenseID int64) string { return "license:" + strconv.FormatInt(licenseID, 10) }

// FormatTime encodes a time for HeaderReceivedAt.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParseTime decodes a HeaderReceivedAt value.
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// Header returns the first value of the named header, or "".
func Header(r *kgo.Record, name string) string {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// FormatOffset and ParseOffset encode partition/offset header values.
func FormatOffset(n int64) string { return strconv.FormatInt(n, 10) }

// ParseOffset decodes a value written by FormatOffset.
func ParseOffset(s string) (int64, error) { return strconv.ParseInt(strings.TrimSpace(s), 10, 64) }

// The freshness canary: ingest posts a webhook of this action for this
// organization through its own public endpoint every CANARY_INTERVAL; the
// processor stores it as a row of kind "canary" (never part of chat
// analytics) and records when it became queryable (pipeline_canaries).
// Its payload is {"id": "...", "sent_at": RFC 3339 with nanoseconds,
// "instance": "..."}.
const (
	ActionCanary       = "lcpipe_canary"
	CanaryOrganization = "lcpipe-canary"
)
