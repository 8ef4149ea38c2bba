// Package telemetry sets up OpenTelemetry once per process: a tracer
// provider, a meter provider whose metrics are served in the Prometheus
// text format on the admin listener (/metrics), and, when configured, OTLP
// exporters pushing traces and metrics to a collector.
//
// Configuration is the standard OTEL_* variables, read once by cmd/lcpipe
// into Config (see its fields for the variables and defaults). The OTLP
// exporters read their transport details (headers, TLS, timeouts,
// per-signal endpoints) from the same OTEL_EXPORTER_OTLP_* variables
// themselves, as the specification says.
//
// Nothing is exported unless asked for: with no exporter configured, the
// tracer provider is a no-op (spans cost nothing and nothing is sent) and
// the only metric reader is the Prometheus one, which is pulled by scrapes
// of /metrics. So a process without OTEL_* variables makes no background
// network attempts (TestNoExporterNoNetwork).
//
// Components never use the global OpenTelemetry providers: the Telemetry
// value is passed to them (ingest.Config, processor.Options), so tests run
// several processes' worth of telemetry side by side.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporter names (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER).
const (
	ExporterAuto       = ""           // otlp when an OTLP endpoint is set, else none
	ExporterOTLP       = "otlp"       // push to OTEL_EXPORTER_OTLP_ENDPOINT
	ExporterConsole    = "console"    // traces only: print spans to stdout (debugging)
	ExporterPrometheus = "prometheus" // metrics only: the admin listener's /metrics, nothing pushed
	ExporterNone       = "none"
)

// Config is the process's OpenTelemetry configuration, read once from the
// standard OTEL_* variables. Zero values are the defaults documented on
// each field.
type Config struct {
	// ServiceName is the service.name resource attribute
	// (OTEL_SERVICE_NAME). Default "lcpipe-<command>", set by cmd/lcpipe;
	// "lcpipe" when empty.
	ServiceName string
	// Version is service.version (the build's version).
	Version string
	// ResourceAttributes are extra resource attributes
	// (OTEL_RESOURCE_ATTRIBUTES: key=value pairs, comma-separated,
	// values percent-encoded). A service.name here is overridden by
	// ServiceName when that is set.
	ResourceAttributes string
	// TracesExporter is otlp, console or none (OTEL_TRACES_EXPORTER).
	// Default (empty): otlp when an OTLP endpoint is set, else none.
	TracesExporter string
	// MetricsExporter is otlp, prometheus or none (OTEL_METRICS_EXPORTER).
	// Default (empty): otlp when an OTLP endpoint is set, else prometheus.
	// /metrics on the admin listener is served in every case; otlp pushes
	// the same metrics too.
	MetricsExporter string
	// Endpoint, TracesEndpoint and MetricsEndpoint are
	// OTEL_EXPORTER_OTLP_ENDPOINT and its per-signal variants. Setting one
	// turns the default exporters on; the exporters read them (and the
	// other OTEL_EXPORTER_OTLP_* variables) themselves.
	Endpoint, TracesEndpoint, MetricsEndpoint string
	// Protocol is http/protobuf (default) or grpc
	// (OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string
	// Sampler is the trace sampler (OTEL_TRACES_SAMPLER): always_on,
	// always_off, traceidratio, parentbased_always_on (default),
	// parentbased_always_off, parentbased_traceidratio. SamplerArg is the
	// ratio for the traceidratio samplers (OTEL_TRACES_SAMPLER_ARG,
	// default 1).
	Sampler    string
	SamplerArg string
	// MetricInterval is how often metrics are pushed with the otlp
	// exporter (OTEL_METRIC_EXPORT_INTERVAL, milliseconds). Default 60s.
	MetricInterval time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{ServiceName: "lcpipe", Protocol: "http/protobuf", Sampler: "parentbased_always_on", MetricInterval: time.Minute}
}

// withDefaults fills the zero fields with the defaults documented on
// Config. ServiceName is left alone: when empty, a service.name in
// ResourceAttributes wins over the default (resource).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Protocol = cmp.Or(c.Protocol, d.Protocol)
	c.Sampler = cmp.Or(c.Sampler, d.Sampler)
	c.MetricInterval = cmp.Or(c.MetricInterval, d.MetricInterval)
	return c
}

// endpointSet reports whether any OTLP endpoint is configured.
func (c Config) endpointSet(signal string) bool {
	if c.Endpoint != "" {
		return true
	}
	if signal == "traces" {
		return c.TracesEndpoint != ""
	}
	return c.MetricsEndpoint != ""
}

// TracesExporterName resolves the default: the exporter traces go to.
func (c Config) TracesExporterName() string {
	if c.TracesExporter != ExporterAuto {
		return c.TracesExporter
	}
	if c.endpointSet("traces") {
		return ExporterOTLP
	}
	return ExporterNone
}

// MetricsExporterName resolves the default: where metrics are pushed
// besides /metrics ("prometheus" means nowhere).
func (c Config) MetricsExporterName() string {
	if c.MetricsExporter != ExporterAuto {
		return c.MetricsExporter
	}
	if c.endpointSet("metrics") {
		return ExporterOTLP
	}
	return ExporterPrometheus
}

// Validate reports every problem at once (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	switch c.TracesExporter {
	case ExporterAuto, ExporterOTLP, ExporterConsole, ExporterNone:
	default:
		errs = append(errs, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER %q: want otlp, console or none", c.TracesExporter))
	}
	switch c.MetricsExporter {
	case ExporterAuto, ExporterOTLP, ExporterPrometheus, ExporterNone:
	default:
		errs = append(errs, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER %q: want otlp, prometheus or none", c.MetricsExporter))
	}
	switch c.Protocol {
	case "", "http/protobuf", "grpc":
	default:
		errs = append(errs, fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", c.Protocol))
	}
	if _, err := c.sampler(); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseResourceAttributes(c.ResourceAttributes); err != nil {
		errs = append(errs, err)
	}
	if c.MetricInterval < 0 {
		errs = append(errs, errors.New("telemetry: OTEL_METRIC_EXPORT_INTERVAL must not be negative"))
	}
	return errors.Join(errs...)
}

// sampler builds the configured sampler.
func (c Config) sampler() (sdktrace.Sampler, error) {
	ratio := 1.0
	if c.SamplerArg != "" && strings.Contains(c.Sampler, "traceidratio") {
		r, err := strconv.ParseFloat(c.SamplerArg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG %q: want a ratio in [0, 1]", c.SamplerArg)
		}
		ratio = r
	}
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", c.Sampler)
}

// ParseResourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: key=value
// pairs separated by commas, keys and values percent-decoded.
func ParseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", pair)
		}
		key, err1 := url.PathUnescape(strings.TrimSpace(k))
		val, err2 := url.PathUnescape(strings.TrimSpace(v))
		if err := errors.Join(err1, err2); err != nil || key == "" {
			return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: bad pair %q", pair)
		}
		out = append(out, attribute.String(key, val))
	}
	return out, nil
}

// Options are what tests (and only tests) inject instead of the
// configured exporters.
type Options struct {
	// SpanExporter receives every ended span synchronously (e.g.
	// tracetest.NewInMemoryExporter); it turns tracing on regardless of
	// Config.TracesExporter.
	SpanExporter sdktrace.SpanExporter
	// Batch hands SpanExporter the spans in batches from a background
	// goroutine, as the OTLP exporter gets them (benchmarks).
	Batch bool
	// MetricReaders are added to the Prometheus reader.
	MetricReaders []sdkmetric.Reader
}

// Telemetry is one process's OpenTelemetry: pass it to the components.
// The zero value is not usable; build with New (or Disabled).
type Telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	registry       *prometheus.Registry
	tracing        bool
	exporting      []string // what is pushed, for the start-up log
	shutdown       []func(context.Context) error
}

// New builds the providers. It starts no goroutine that talks to the
// network unless an exporter is configured (then the OTLP exporters
// connect lazily, on their first export).
func New(ctx context.Context, cfg Config, o Options) (*Telemetry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res, err := cfg.resource()
	if err != nil {
		return nil, err
	}
	t := &Telemetry{
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:   prometheus.NewRegistry(),
	}
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Metrics: the Prometheus reader always (pull only), OTLP when asked.
	promExp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	for _, r := range o.MetricReaders {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	if cfg.MetricsExporterName() == ExporterOTLP {
		exp, err := cfg.metricExporter(ctx)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(cfg.MetricInterval))))
		t.exporting = append(t.exporting, "metrics:otlp/"+cfg.Protocol)
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.meterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)

	// Traces: a real provider only when spans go somewhere and the
	// sampler can keep any; otherwise the no-op provider, so spans cost
	// nothing (components also check Tracing to skip building
	// attributes and per-record work).
	sampler, _ := cfg.sampler()
	var spanExp sdktrace.SpanExporter
	var syncExport bool
	switch {
	case o.SpanExporter != nil:
		spanExp, syncExport = o.SpanExporter, !o.Batch
	case cfg.Sampler == "always_off":
	case cfg.TracesExporterName() == ExporterOTLP:
		if spanExp, err = cfg.spanExporter(ctx); err != nil {
			_ = mp.Shutdown(ctx)
			return nil, err
		}
		t.exporting = append(t.exporting, "traces:otlp/"+cfg.Protocol)
	case cfg.TracesExporterName() == ExporterConsole:
		if spanExp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stdout)); err != nil {
			_ = mp.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: console exporter: %w", err)
		}
		t.exporting = append(t.exporting, "traces:console")
	}
	if spanExp == nil {
		t.tracerProvider = noop.NewTracerProvider()
		return t, nil
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if syncExport {
		topts = append(topts, sdktrace.WithSyncer(spanExp))
	} else {
		topts = append(topts, sdktrace.WithBatcher(spanExp))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	t.tracerProvider, t.tracing = tp, true
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Disabled is telemetry that records nothing anywhere (no-op providers,
// an empty /metrics): the default of components built without one.
func Disabled() *Telemetry {
	return &Telemetry{
		tracerProvider: noop.NewTracerProvider(),
		meterProvider:  sdkmetric.NewMeterProvider(),
		propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:       prometheus.NewRegistry(),
	}
}

func (c Config) spanExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	var exp sdktrace.SpanExporter
	var err error
	if c.Protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	return exp, nil
}

func (c Config) metricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	var exp sdkmetric.Exporter
	var err error
	if c.Protocol == "grpc" {
		exp, err = otlpmetricgrpc.New(ctx)
	} else {
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
	}
	return exp, nil
}

// resource is service.name, service.version, service.instance.id, the
// host, and OTEL_RESOURCE_ATTRIBUTES.
func (c Config) resource() (*resource.Resource, error) {
	extra, err := ParseResourceAttributes(c.ResourceAttributes)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	attrs := append([]attribute.KeyValue{
		semconv.ServiceInstanceID(host + "-" + strconv.Itoa(os.Getpid())),
		semconv.HostName(host),
	}, extra...)
	name := c.ServiceName
	if name == "" {
		name = "lcpipe"
		for _, kv := range extra {
			if kv.Key == semconv.ServiceNameKey {
				name = kv.Value.AsString()
			}
		}
	}
	attrs = append(attrs, semconv.ServiceName(name))
	if c.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(c.Version))
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...), nil
}

// TracerProvider is the process's tracer provider (a no-op one unless
// Tracing).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// Tracer returns a tracer of the provider.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.tracerProvider.Tracer(name) }

// MeterProvider is the process's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// Meter returns a meter of the provider.
func (t *Telemetry) Meter(name string) metric.Meter { return t.meterProvider.Meter(name) }

// Propagator is W3C trace context plus baggage.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// Tracing reports whether spans are recorded and exported. When false,
// components skip per-request and per-record tracing work entirely.
func (t *Telemetry) Tracing() bool { return t.tracing }

// Exporting lists what is pushed (e.g. "traces:otlp/http/protobuf"), for
// the start-up log; empty when nothing leaves the process.
func (t *Telemetry) Exporting() []string { return t.exporting }

// MetricsHandler serves every metric in the Prometheus text format: the
// OpenTelemetry instruments (through the OTel Prometheus exporter), Go
// runtime and process metrics. Mount it on the admin listener.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Shutdown flushes and stops the exporters (bounded by ctx).
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		if err := t.shutdown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	t.shutdown = nil
	return errors.Join(errs...)
}
