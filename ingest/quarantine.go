package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Quarantine is the folder of webhooks ingest acknowledged but Kafka
// refused for good (larger than the topic's max.message.bytes, say): one
// fsynced file per webhook, in the spool entry format, named
// <unix-nanos>-<request-id>.rec. Ingest writes it (quarantine, record.go);
// `lcpipe quarantine redrive` re-sends the files when Kafka accepts them and
// removes them. Its bytes count toward the spool's cap (SPOOL_MAX_BYTES):
// both are webhooks acknowledged and not yet in Kafka, on the same disk.
type Quarantine struct {
	dir string

	// size is cached: the cap check runs on every spooled request, and the
	// folder changes behind ingest's back (redrive removes files).
	mu      sync.Mutex
	scanned atomic.Int64 // unix nanos of the last scan
	files   atomic.Int64
	bytes   atomic.Int64
}

// QuarantineSuffix ends every quarantined file's name.
const QuarantineSuffix = ".rec"

// quarantineRescan is how stale the cached size may be.
const quarantineRescan = time.Second

// NewQuarantine is the quarantine in dir (created on the first Put).
func NewQuarantine(dir string) *Quarantine { return &Quarantine{dir: dir} }

// Dir is the folder.
func (q *Quarantine) Dir() string { return q.dir }

// Put writes entry (a spool entry) as a new fsynced file and returns its path.
func (q *Quarantine) Put(requestID string, entry []byte) (string, error) {
	if err := os.MkdirAll(q.dir, 0o750); err != nil {
		return "", fmt.Errorf("ingest: quarantine: %w", err)
	}
	rid := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			return c
		}
		return '_'
	}, requestID)
	path := filepath.Join(q.dir, fmt.Sprintf("%d-%s%s", time.Now().UnixNano(), rid, QuarantineSuffix))
	// Written under a temporary name, then renamed: a reader (lcpipe
	// quarantine) never sees a half-written file.
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, entry); err != nil {
		return "", fmt.Errorf("ingest: quarantine: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("ingest: quarantine: %w", err)
	}
	if d, err := os.Open(q.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	q.files.Add(1)
	q.bytes.Add(int64(len(entry)))
	return path, nil
}

// QuarantinedFile is one quarantined webhook on disk.
type QuarantinedFile struct {
	Path  string
	Bytes int64
	// At is when it was quarantined (from the file name).
	At time.Time
}

// List returns the quarantined files, oldest first.
func (q *Quarantine) List() ([]QuarantinedFile, error) {
	entries, err := os.ReadDir(q.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: list quarantine %s: %w", q.dir, err)
	}
	var out []QuarantinedFile
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), QuarantineSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile (a redrive)
		}
		f := QuarantinedFile{Path: filepath.Join(q.dir, e.Name()), Bytes: info.Size(), At: info.ModTime().UTC()}
		var ns int64
		if _, err := fmt.Sscanf(e.Name(), "%d-", &ns); err == nil && ns > 0 {
			f.At = time.Unix(0, ns).UTC()
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Read decodes a quarantined file into the record ingest built for it
// (key, value, headers, timestamp; no topic).
func (q *Quarantine) Read(path string) (*kgo.Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: read quarantined %s: %w", path, err)
	}
	r, err := decodeSpoolEntry(b)
	if err != nil {
		return nil, fmt.Errorf("ingest: quarantined %s: %w", path, err)
	}
	return r, nil
}

// Remove deletes a quarantined file (after it was delivered) and syncs the folder.
func (q *Quarantine) Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ingest: remove quarantined %s: %w", path, err)
	}
	d, err := os.Open(q.dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

// Size is the number of files and their bytes, rescanned at most once a
// second (the folder changes when a redrive removes files).
func (q *Quarantine) Size() (files, bytes int64) {
	if time.Now().UnixNano()-q.scanned.Load() > int64(quarantineRescan) {
		q.rescan()
	}
	return q.files.Load(), q.bytes.Load()
}

func (q *Quarantine) rescan() {
	if !q.mu.TryLock() {
		return // another caller scans; the cached value will do
	}
	defer q.mu.Unlock()
	list, err := q.List()
	if err != nil {
		return
	}
	var n int64
	for _, f := range list {
		n += f.Bytes
	}
	q.files.Store(int64(len(list)))
	q.bytes.Store(n)
	q.scanned.Store(time.Now().UnixNano())
}

// Bytes is Size's byte count (the spool's ExtraBytes).
func (q *Quarantine) Bytes() int64 {
	_, b := q.Size()
	return b
}

// writeFileSync writes b to a new file at path and fsyncs the file and its
// directory, so the file survives a crash once it returns.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
