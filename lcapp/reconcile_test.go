package lcapp

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// assertDeliveriesAccepted delivers one incoming_chat from the fake to every
// registration and wants 200 from each, and one registration per action.
func assertDeliveriesAccepted(t *testing.T, h *harness) {
	t.Helper()
	codes, err := h.fake.Deliver(ctxT(t), testOrg, "incoming_chat", map[string]any{})
	if err != nil || len(codes) == 0 {
		t.Fatalf("delivery: %v %v", codes, err)
	}
	for _, c := range codes {
		if c != 200 {
			t.Errorf("deliveries answered %v: LiveChat sends a secret the store does not hold", codes)
			break
		}
	}
	per := map[string]int{}
	for _, w := range h.fake.Webhooks(testClientID) {
		per[w.Action]++
	}
	var wrong []string
	for _, act := range DefaultActions {
		if per[act] != 1 {
			wrong = append(wrong, fmt.Sprintf("%s: %d", act, per[act]))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("registrations per action, want 1 each: %v", wrong)
	}
}

// Two Reconcile runs at once in two processes sharing the store (two
// installs, or `lcpipe webhooks register` during an install), both making
// the registration set: the first is stopped inside LiveChat's
// register_webhook while the second runs. Without a lock across processes
// the second registers its own secret and the first then overwrites the
// store with its own, so LiveChat sends a secret the store does not hold.
func TestConcurrentReconcile(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	if _, err := h.app.Unregister(ctx, testOrg); err != nil { // back to "no registration set"
		t.Fatal(err)
	}
	first, second := h.app, h.newApp()
	waiting := make(chan struct{})
	second.lockWaited = func() { close(waiting) }

	reached, release := h.fake.Hold("register_webhook", 1)
	defer release()
	firstDone := make(chan error, 1)
	go func() { _, err := first.Reconcile(ctx, testOrg); firstDone <- err }()
	select {
	case <-reached:
	case err := <-firstDone:
		t.Fatalf("first reconcile ended before registering: %v", err)
	}
	secondDone := make(chan error, 1)
	go func() { _, err := second.Reconcile(ctx, testOrg); secondDone <- err }()
	// Let the first go on once the second finished or waits for it.
	var secondErr error
	select {
	case secondErr = <-secondDone:
		secondDone = nil
	case <-waiting:
	case <-ctx.Done():
		t.Fatal("second reconcile neither finished nor waited")
	}
	release()
	if err := <-firstDone; err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	if secondDone != nil {
		secondErr = <-secondDone
	}
	if secondErr != nil {
		t.Fatalf("second reconcile: %v", secondErr)
	}
	assertDeliveriesAccepted(t, h)
}

// receiverAt serves WebhookPath for the App made by mk (given the
// listener's base URL) on a new listener, as a second public URL of the
// same ingest would.
func receiverAt(t *testing.T, h *harness, mk func(base string) *App) *App {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := mk("http://" + ln.Addr().String())
	srv := fiber.New(fiber.Config{DisableStartupMessage: true})
	other := &harness{t: t, app: app}
	srv.Post(WebhookPath, other.receive)
	go func() { _ = srv.Listener(ln) }()
	t.Cleanup(func() { _ = srv.ShutdownWithTimeout(200 * time.Millisecond) })
	return app
}

// A rotation (PUBLIC_BASE_URL moved: new URL, new secret) stopped half-way,
// after the first registration with the new secret: deliveries with the new
// secret and with the old one are both accepted, because the new secret is
// stored before LiveChat gets it and the previous one stays accepted for a
// while; after that while only the new one is.
func TestRotationAcceptsBothSecrets(t *testing.T) {
	c := &clock{}
	h := newHarness(t, withClock(c))
	ctx := ctxT(t)
	h.signIn(h.browser)
	old, _ := h.app.WebhookSecrets(ctx, testOrg)
	moved := receiverAt(t, h, func(base string) *App {
		h.cfg.PublicBaseURL = base
		return h.newApp()
	})

	reached, release := h.fake.Hold("register_webhook", 2)
	defer release()
	done := make(chan error, 1)
	go func() { _, err := moved.Reconcile(ctx, testOrg); done <- err }()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("reconcile ended before the second registration: %v", err)
	}
	codes, err := h.fake.Deliver(ctx, testOrg, "incoming_chat", map[string]any{})
	if err != nil || len(codes) == 0 {
		t.Fatalf("delivery half-way: %v %v", codes, err)
	}
	for _, code := range codes {
		if code != 200 {
			t.Errorf("deliveries half-way through the rotation answered %v, want 200 each", codes)
			break
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertDeliveriesAccepted(t, h)
	now, _ := moved.WebhookSecrets(ctx, testOrg)
	if len(now) != 2 || now[0] == old[0] || now[1] != old[0] {
		t.Fatalf("after the rotation: %d secrets, want the new one then the previous one", len(now))
	}
	c.advance(previousSecretGrace + time.Second)
	moved.secrets.invalidate()
	if now, _ := moved.WebhookSecrets(ctx, testOrg); len(now) != 1 || now[0] == old[0] {
		t.Fatalf("after the grace period: %d secrets, want only the new one", len(now))
	}
}
