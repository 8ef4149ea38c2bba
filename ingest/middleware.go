package ingest

// What every request goes through around the handlers (STYLE.md rule 7),
// so that the webhook handler does only the webhook: observe gives the
// request its id, carries the caller's trace context, and once the answer
// is known counts its outcome (Counters, lcpipe_ingest_webhooks_total, the
// ack latency) and labels its span. The handlers report what they learnt in
// the request's exchange; fail and refuse mark ingest's own answers.

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/lcpipe/lcpipe/internal/wire"
)

const localExchange = "lcpipe-exchange"

// exchange is one request as the middleware sees it: its id, and what the
// handlers reported about it. It lives in the request's Locals from the
// start of observe to its end, then goes back to the pool.
type exchange struct {
	requestID string

	// Set by the webhook handler as it learns them.
	action     *string // label of lcpipe_ingest_webhooks_total; nil: no readable envelope
	env        envelope
	hasEnv     bool
	org        string // the organization stored (resolved from the license for v3.3 bodies)
	receivedAt time.Time
	stored     bool // durable: answered 200
	spooled    bool // durable in the spool rather than Kafka

	// answered: ingest answered with its JSON error body (fail), as opposed
	// to a route of Config.Routes answering for itself. refusal is the
	// reason given to refuse, if any.
	answered bool
	refusal  string
	// failure and failureMsg become the span's error and status.
	failure    error
	failureMsg string
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// exchangeOf returns the request's exchange; nil outside observe (errors
// fasthttp reports before any middleware ran, e.g. a request it cannot
// parse).
func exchangeOf(c *fiber.Ctx) *exchange {
	x, _ := c.Locals(localExchange).(*exchange)
	return x
}

// observe is the outermost middleware after otelfiber's span (tracing
// only). It answers errors itself (through the app's error handler), so
// the status it counts is the one sent.
func (s *Server) observe(c *fiber.Ctx) error {
	x := exchanges.Get().(*exchange)
	*x = exchange{requestID: s.newRequestID()}
	c.Locals(localExchange, x)
	defer func() {
		c.Locals(localExchange, nil)
		exchanges.Put(x)
	}()
	c.Set(fiber.HeaderXRequestID, x.requestID)
	// While tracing, otelfiber took the caller's trace context already;
	// otherwise it is still passed on in the record (only requests that
	// carry one pay for it).
	if !s.tel.tracing && c.Get(wire.HeaderTraceparent) != "" {
		c.SetUserContext(s.prop.Extract(c.UserContext(), fiberCarrier{c}))
	}
	webhook := strings.HasPrefix(c.Path(), WebhookPath)

	if err := c.Next(); err != nil {
		if herr := c.App().Config().ErrorHandler(c, err); herr != nil {
			return herr
		}
	}

	status := c.Response().StatusCode()
	ctx := c.UserContext()
	if x.stored || x.answered {
		s.countOutcome(status, x.refusal)
	}
	if x.stored {
		s.tel.acked(ctx, x.receivedAt, x.spooled)
	}
	if webhook {
		s.tel.countWebhook(ctx, x.action, status)
	}
	if s.tel.tracing {
		s.labelSpan(trace.SpanFromContext(ctx), x)
	}
	return nil
}

// countOutcome adds one answer to the Counters: ingest's own answers (a
// stored webhook, or its JSON error body), never the answers of the routes
// of Config.Routes. An unknown path (404) is refused but not counted.
func (s *Server) countOutcome(status int, refusal string) {
	c := &s.counters
	switch {
	case status == fiber.StatusOK:
		c.accepted.Add(1)
	case status == fiber.StatusUnauthorized:
		c.unauthorized.Add(1)
	case status == fiber.StatusNotFound:
	case status == fiber.StatusMethodNotAllowed:
		c.methodNotAllowed.Add(1)
	case status == fiber.StatusRequestEntityTooLarge:
		c.tooLarge.Add(1)
	case status == fiber.StatusUnsupportedMediaType:
		c.unsupportedMedia.Add(1)
	case status == fiber.StatusServiceUnavailable && refusal == refusalBusy:
		c.busy.Add(1)
	case status >= 500:
		c.unavailable.Add(1)
	case status >= 400:
		c.badRequest.Add(1)
	}
}

// refusalBusy: a large body refused because BodyMemory is in use (a 503
// that is counted as busy, not as our failure).
const refusalBusy = "busy"

// labelSpan puts what the handler learnt on the server span. Attributes
// cost allocations on every request: only while tracing.
func (s *Server) labelSpan(span trace.Span, x *exchange) {
	if x.hasEnv {
		span.SetAttributes(
			attribute.String("livechat.action", x.env.Action),
			attribute.String("livechat.organization_id", x.env.OrganizationID),
			attribute.Int64("livechat.license_id", x.env.LicenseID),
			attribute.String("request.id", x.requestID),
		)
		if x.org != "" && x.org != x.env.OrganizationID {
			span.SetAttributes(attribute.String("livechat.resolved_organization_id", x.org))
		}
	}
	if x.stored {
		span.SetAttributes(attribute.Bool("ingest.spooled", x.spooled))
	}
	if x.failure != nil {
		span.RecordError(x.failure)
	}
	if x.failureMsg != "" {
		span.SetStatus(codes.Error, x.failureMsg)
	}
}

// failed notes why the request failed, for its span.
func (x *exchange) failed(err error, msg string) {
	if x != nil {
		x.failure, x.failureMsg = err, msg
	}
}

// newRequestID is a process-unique id: a random prefix chosen at start and
// a sequence number.
func (s *Server) newRequestID() string {
	var b strings.Builder // one allocation, where concatenating makes two
	b.Grow(len(s.ridPrefix) + 13)
	b.WriteString(s.ridPrefix)
	var n [13]byte
	b.Write(strconv.AppendUint(n[:0], s.ridSeq.Add(1), 36))
	return b.String()
}

// requestID returns the id of this request: the exchange's, or, for an
// error fasthttp reports before any middleware ran, one made on first use.
func (s *Server) requestID(c *fiber.Ctx) string {
	if x := exchangeOf(c); x != nil {
		return x.requestID
	}
	if id, ok := c.Locals(localRequestID).(string); ok {
		return id
	}
	id := s.newRequestID()
	c.Locals(localRequestID, id)
	c.Set(fiber.HeaderXRequestID, id)
	return id
}

// localRequestID holds the id of a request no exchange holds.
const localRequestID = "request_id"

// fiberCarrier reads W3C trace context from request headers.
type fiberCarrier struct{ c *fiber.Ctx }

func (f fiberCarrier) Get(key string) string { return f.c.Get(key) }
func (f fiberCarrier) Set(string, string)    {}
func (f fiberCarrier) Keys() []string        { return []string{wire.HeaderTraceparent, wire.HeaderTracestate} }
