package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	fiberrecover "github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/valyala/fasthttp"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func (s *Server) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "lcpipe-ingest",
		BodyLimit:             s.cfg.MaxBodyBytes,
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		// Bodies are read by readBody, as they arrive (limits.go); the
		// server's own reading would allocate what a request announces.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		Concurrency:                  s.cfg.MaxConns,
		ReadTimeout:                  s.cfg.HeaderTimeout, // the body gets BodyTimeout (headerReceived)
		WriteTimeout:                 15 * time.Second,
		IdleTimeout:                  s.cfg.IdleTimeout,
	})
	srv := app.Server()
	srv.HeaderReceived = s.headerReceived
	srv.MaxConnsPerIP = s.cfg.MaxConnsPerIP
	srv.Logger = serverLog{s.refusals}
	srv.SecureErrorLogMessage = true // no request bytes (a secret) in its messages
	// Fiber answers a method it does not know in plain text before any
	// middleware runs; answer it like every other error.
	route := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if !slices.Contains(fiber.DefaultMethods, string(ctx.Method())) {
			s.refusals.add("method", ctx.RemoteAddr().String())
			s.countOutcome(fiber.StatusBadRequest, "method")
			rid := s.newRequestID()
			b, _ := json.Marshal(errorBody{Error: "invalid HTTP method", RequestID: rid})
			ctx.Response.Header.Set("X-Request-ID", rid)
			ctx.SetConnectionClose()
			ctx.SetStatusCode(fiber.StatusBadRequest)
			ctx.SetContentType(fiber.MIMEApplicationJSON)
			ctx.SetBody(b)
			return
		}
		route(ctx)
	}
	s.useTelemetry(app) // otelfiber's server span while tracing (telemetry.go)
	app.Use(s.observe)  // request id, trace context, outcome counters (middleware.go)
	app.Use(s.readBody)
	// A panic is our failure: answer 503 (via errorHandler) so LiveChat retries.
	app.Use(fiberrecover.New())
	app.Post(WebhookPath, s.webhook)
	app.All(WebhookPath, func(c *fiber.Ctx) error {
		s.refuse(c, "method")
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
		return s.fail(c, fiber.StatusMethodNotAllowed, "method not allowed: use POST")
	})
	app.Get("/healthz", s.healthz)
	app.Get("/readyz", s.readyz)
	if s.cfg.Routes != nil {
		s.cfg.Routes(app)
	}
	return app
}

// clip shortens an untrusted string for a log line.
func clip(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n] + "…"
}

// refuse counts a refused request for the periodic summary (and logs it
// at debug level).
func (s *Server) refuse(c *fiber.Ctx, reason string) {
	s.refuseWith(c, reason, c.Context().RemoteAddr().String())
}

// refuseWith is refuse with the summary's detail (the remote address and
// more).
func (s *Server) refuseWith(c *fiber.Ctx, reason, detail string) {
	if x := exchangeOf(c); x != nil {
		x.refusal = reason
	}
	s.refusals.add(reason, detail)
	s.log.Debug("request refused", "reason", reason, "request_id", s.requestID(c), "remote_addr", c.Context().RemoteAddr().String())
}

type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id"`
}

// fail answers with status and the JSON error body every error uses. The
// answer is counted by observe, or here for an error fasthttp reports
// before any middleware ran.
func (s *Server) fail(c *fiber.Ctx, status int, msg string) error {
	if x := exchangeOf(c); x != nil {
		x.answered = true
	} else {
		s.countOutcome(status, "")
	}
	b, _ := json.Marshal(errorBody{Error: msg, RequestID: s.requestID(c)})
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(b)
}

// errorHandler answers errors raised outside the handlers (header read
// timeouts, unparsable requests, unknown routes, panics). Anything that is not a client error is ours and answers
// 503, never 4xx or 500.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch {
		case fe.Code == fiber.StatusBadGateway:
			// The server could not read the request (connection reset
			// or broken mid-request): the client's side, and nobody is
			// left to read the answer.
			s.refuse(c, "read_error")
			return s.fail(c, fiber.StatusBadRequest, "could not read the request")
		case fe.Code >= 400 && fe.Code < 500:
			reason := "bad_request"
			switch fe.Code {
			case fiber.StatusRequestEntityTooLarge:
				s.refuse(c, "too_large")
				return s.fail(c, fe.Code, "body larger than "+strconv.Itoa(s.cfg.MaxBodyBytes)+" bytes")
			case fiber.StatusMethodNotAllowed:
				reason = "method"
			case fiber.StatusRequestTimeout:
				reason = "timeout"
			case fiber.StatusRequestHeaderFieldsTooLarge:
				reason = "header_too_large"
			case fiber.StatusNotFound:
				reason = "not_found"
			}
			s.refuse(c, reason)
			return s.fail(c, fe.Code, strings.ToLower(fe.Message))
		}
	}
	s.log.Error("request failed", "request_id", s.requestID(c), "path", c.Path(), "error", err)
	return s.fail(c, fiber.StatusServiceUnavailable, "temporarily unavailable")
}

var okPrefix = []byte(`{"status":"ok","request_id":"`)

// webhook is POST /webhooks/livechat. The request id, the trace context,
// counters and span labels are observe's (middleware.go); the handler
// reports what it learnt in the request's exchange.
func (s *Server) webhook(c *fiber.Ctx) error {
	receivedAt := time.Now()
	x := exchangeOf(c)
	rid := x.requestID

	ct := c.Get(fiber.HeaderContentType)
	if !isJSON(ct) {
		s.refuse(c, "content_type")
		return s.fail(c, fiber.StatusUnsupportedMediaType, "content type must be application/json, got "+strconv.Quote(ct))
	}
	// The body is stored raw, so it must arrive raw: no decoding step that
	// could change bytes (or inflate a small request into a huge one).
	if ce := c.Get(fiber.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		s.refuse(c, "content_encoding")
		return s.fail(c, fiber.StatusUnsupportedMediaType, "content encoding "+strconv.Quote(ce)+" is not supported; send the body uncompressed")
	}
	// fasthttp reuses the body buffer after the handler returns: parse the
	// request's bytes here, keep only the copy made by blankSecret.
	body := c.Request().Body()
	env, err := parseEnvelope(body)
	if err != nil {
		s.refuse(c, "bad_json")
		return s.fail(c, fiber.StatusBadRequest, err.Error())
	}
	x.action, x.env, x.hasEnv = actionLabel(env.Action), env, true

	ctx := c.UserContext()
	auth, org, err := s.authenticate(ctx, &env)
	if err != nil {
		if errors.Is(err, errUnauthorized) {
			x.failed(nil, "unauthorized")
			// One summary per interval, not a line per request: anyone can
			// send these (logged per request at debug level).
			s.refuseWith(c, "unauthorized", c.Context().RemoteAddr().String()+" organization_id="+strconv.Quote(clip(env.OrganizationID, 64))+
				" license_id="+strconv.FormatInt(env.LicenseID, 10))
			s.log.Debug("webhook rejected: secret mismatch", "request_id", rid, "organization_id", env.OrganizationID,
				"license_id", env.LicenseID, "action", env.Action, "remote_addr", c.Context().RemoteAddr().String())
			if env.OrganizationID == "" {
				return s.fail(c, fiber.StatusUnauthorized, "secret_key does not match, or license_id "+
					strconv.FormatInt(env.LicenseID, 10)+" belongs to no organization that installed the app")
			}
			return s.fail(c, fiber.StatusUnauthorized, "secret_key does not match this organization")
		}
		s.counters.installationErrors.Add(1)
		x.failed(err, "installation lookup failed")
		s.log.ErrorContext(ctx, "webhook: installation secrets unavailable", "request_id", rid, "organization_id", env.OrganizationID,
			"license_id", env.LicenseID, "error", err)
		return s.fail(c, fiber.StatusServiceUnavailable, "cannot verify the webhook now, retry later")
	}
	x.org = org

	req := request{
		receivedAt: receivedAt,
		requestID:  rid,
		remoteAddr: c.Context().RemoteAddr(),
		auth:       auth,
		org:        org,
		env:        env,
		value:      env.blankSecret(body),
	}
	rec := s.buildRecord(&req)
	s.prop.Inject(ctx, headerCarrier{&rec.Headers})

	spooled, err := s.store(ctx, rec)
	if err != nil {
		x.failed(err, "not durable")
		msg := "cannot store the webhook now, retry later"
		switch {
		case errors.Is(err, spool.ErrFull):
			msg = "Kafka unavailable and local spool full, retry later"
		case errors.Is(err, errTurnTimeout):
			msg = "an earlier webhook of this chat is still being stored, retry later"
		}
		s.log.ErrorContext(ctx, "webhook not stored", "request_id", rid, "organization_id", org, "license_id", env.LicenseID, "action", env.Action, "error", err)
		return s.fail(c, fiber.StatusServiceUnavailable, msg)
	}
	x.stored, x.spooled, x.receivedAt = true, spooled, receivedAt
	s.accepted(rid, org, env.Action, receivedAt)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	// Into the response's pooled buffer: no allocation.
	resp := c.Status(fiber.StatusOK).Response()
	resp.AppendBody(okPrefix)
	resp.AppendBodyString(rid)
	resp.AppendBodyString(`"}`)
	return nil
}

// accepted runs the OnAccepted hook. The webhook is durable by then, so a
// panicking hook must not turn the answer into a 503 (LiveChat would send
// it again): it is logged instead.
func (s *Server) accepted(rid, org, action string, receivedAt time.Time) {
	if s.cfg.OnAccepted == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("OnAccepted hook panicked", "request_id", rid, "panic", fmt.Sprint(p))
		}
	}()
	s.cfg.OnAccepted(org, action, receivedAt)
}

// isJSON reports whether a Content-Type is application/json, parameters
// (charset) allowed. Cheaper than mime.ParseMediaType, which builds a map
// of the parameters on every request.
func isJSON(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), fiber.MIMEApplicationJSON)
}

var errUnauthorized = errors.New("unauthorized")

func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// authenticate checks the body's secret_key against the static secrets and
// the installation secrets of the webhook's organization: the one its
// organization_id names, or, for a v3.3 body (license_id only), the
// installed organization holding that license. Both sides are hashed first,
// so the comparison is constant-time and does not leak the length either.
//
// It returns how the secret was verified and the webhook's organization
// (the body's, else the one found for its license, else ""). errUnauthorized
// on mismatch; any other error is ours (503).
func (s *Server) authenticate(ctx context.Context, env *envelope) (auth, org string, err error) {
	if !env.HasSecret || env.SecretKey == "" {
		return "", "", errUnauthorized
	}
	org = env.OrganizationID
	got := hashSecret(env.SecretKey)
	match := 0
	for i := range s.secrets {
		match |= subtle.ConstantTimeCompare(got[:], s.secrets[i][:])
	}
	if match == 1 {
		if org == "" && s.cfg.Installations != nil {
			// Authentic already: naming the organization is a bonus, so
			// a failing lookup stores the webhook without one rather
			// than risking it with a 503.
			ictx, cancel := context.WithTimeout(ctx, s.cfg.InstallationsTimeout)
			o, _, lerr := s.cfg.Installations.LicenseSecrets(ictx, env.LicenseID)
			cancel()
			if lerr != nil {
				s.log.Warn("webhook: organization of the license unknown (lookup failed); stored without it",
					"license_id", env.LicenseID, "error", lerr)
			} else {
				org = o
			}
		}
		return wire.AuthStaticSecret, org, nil
	}
	if s.cfg.Installations == nil {
		return "", "", errUnauthorized
	}
	ictx, cancel := context.WithTimeout(ctx, s.cfg.InstallationsTimeout)
	defer cancel()
	var secrets []string
	if org != "" {
		secrets, err = s.cfg.Installations.WebhookSecrets(ictx, org)
	} else {
		org, secrets, err = s.cfg.Installations.LicenseSecrets(ictx, env.LicenseID)
	}
	if err != nil {
		return "", "", err
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		want := hashSecret(sec)
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	if match == 1 && org != "" {
		return wire.AuthInstallationSecret, org, nil
	}
	return "", "", errUnauthorized
}

// healthz answers while the process is alive, with the counters.
func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok", "stats": s.Stats()})
}

// readyz answers 200 when a webhook can be made durable now: Kafka answers
// or the spool has room, and every spooled record reads back. A spool
// Fault (records that do not read back: disk errors, damage) answers 503
// with the reason, so the load balancer stops sending webhooks here and an
// operator looks at the disk; the drain resumes by itself once it reads.
// It reports the spool depth either way.
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	kafkaState := "ok"
	kerr := kafka.Ping(ctx, s.client)
	if kerr != nil {
		kafkaState = "unreachable: " + kerr.Error()
	}
	// Ready to spool means room for a typical large webhook, not one byte.
	writable := s.spool.Writable(min(s.cfg.MaxBodyBytes, 64<<10))
	st := s.spool.Stats()
	ready := (kerr == nil || writable) && st.Fault == nil
	status := fiber.StatusOK
	state := "ready"
	if !ready {
		status, state = fiber.StatusServiceUnavailable, "not ready"
	}
	body := fiber.Map{
		"status":         state,
		"kafka":          kafkaState,
		"spool":          st,
		"spool_writable": writable,
	}
	switch {
	case st.Fault != nil:
		body["reason"] = "spool: " + st.Fault.String()
	case !ready:
		body["reason"] = "Kafka unreachable and the spool is full"
	}
	return c.Status(status).JSON(body)
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
