package lcapp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// ParseKey decodes APP_ENCRYPTION_KEY: 32 bytes as 64 hex digits or as
// standard / URL-safe base64 (with or without padding).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("encryption key is empty")
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("encryption key must be 32 bytes, given as 64 hex digits or base64 (openssl rand -base64 32)")
}

// ErrWrongKey means a record does not decrypt with the configured key.
var ErrWrongKey = errors.New("store record does not decrypt: APP_ENCRYPTION_KEY differs from the key the store was written with")

var (
	bucketInstallations = []byte("installations")
	bucketRegistrations = []byte("registrations")
)

// store keeps installations and webhook registrations in a bbolt file,
// every record sealed with AES-256-GCM (the bucket and key are the
// additional data, so a record cannot be moved to another organization).
//
// Why bbolt, opened per operation: it is an embedded, fsync-on-commit,
// crash-safe B+tree in one file (no server to run locally or in compose,
// just a volume). bbolt allows one process at a time; opening it only for
// the length of one transaction lets the ingest service, the processor
// (directory) and the operator CLI (`lcpipe webhooks`) share the file — its
// flock serializes them. Operations are rare (installs, refreshes every
// hours, cache reloads every few seconds), so the open cost does not matter;
// the webhook hot path reads an in-memory cache (secretCache).
type store struct {
	path        string
	aead        cipher.AEAD
	lockTimeout time.Duration
	mu          sync.Mutex // in-process: avoids bbolt's 50 ms flock polling
}

func newStore(path string, key []byte, lockTimeout time.Duration) (*store, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("lcapp: store cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("lcapp: store cipher: %w", err)
	}
	return &store{path: path, aead: aead, lockTimeout: lockTimeout}, nil
}

func (s *store) open() (*bbolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("lcapp: store directory: %w", err)
	}
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: s.lockTimeout})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("lcapp: store %s is locked by another process for more than %s: %w", s.path, s.lockTimeout, err)
		}
		return nil, fmt.Errorf("lcapp: open store %s: %w", s.path, err)
	}
	return db, nil
}

func (s *store) update(fn func(tx *bbolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open()
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketInstallations, bucketRegistrations} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

func (s *store) view(fn func(tx *bbolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.path); errors.Is(err, os.ErrNotExist) {
		// Nothing stored yet: answer from an empty store without creating the file.
		return fn(nil)
	}
	db, err := s.open()
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(fn)
}

func (s *store) seal(bucket []byte, key string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead()+1)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{1}, nonce...)
	return s.aead.Seal(out, nonce, plain, aad(bucket, key)), nil
}

func (s *store) open1(bucket []byte, key string, sealed []byte, v any) error {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != 1 {
		return fmt.Errorf("lcapp: store record %s/%s: unknown format", bucket, key)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad(bucket, key))
	if err != nil {
		return fmt.Errorf("lcapp: store record %s/%s: %w", bucket, key, ErrWrongKey)
	}
	return json.Unmarshal(plain, v)
}

func aad(bucket []byte, key string) []byte { return []byte(string(bucket) + "/" + key) }

// get reads one record; found is false when absent.
func (s *store) get(tx *bbolt.Tx, bucket []byte, key string, v any) (found bool, err error) {
	if tx == nil {
		return false, nil
	}
	b := tx.Bucket(bucket)
	if b == nil {
		return false, nil
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	return true, s.open1(bucket, key, raw, v)
}

func (s *store) put(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	sealed, err := s.seal(bucket, key, v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), sealed)
}

func (s *store) keys(tx *bbolt.Tx, bucket []byte) []string {
	if tx == nil || tx.Bucket(bucket) == nil {
		return nil
	}
	var out []string
	_ = tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
		out = append(out, string(k))
		return nil
	})
	return out
}

// installationRecord is what is stored per organization (plain strings:
// it only exists sealed or in memory, never printed).
type installationRecord struct {
	OrganizationID  string    `json:"organization_id"`
	AccountID       string    `json:"account_id"`
	Region          string    `json:"region"`
	Scopes          []string  `json:"scopes"`
	AccessToken     string    `json:"access_token"`
	RefreshToken    string    `json:"refresh_token"`
	TokenType       string    `json:"token_type"`
	Expiry          time.Time `json:"expiry"`
	LicenseID       int64     `json:"license_id,omitempty"`
	InstalledAt     time.Time `json:"installed_at"`
	RefreshedAt     time.Time `json:"refreshed_at,omitzero"`
	NeedsReauth     bool      `json:"needs_reauth,omitempty"`
	LastError       string    `json:"last_error,omitempty"`
	LastWebhookAt   time.Time `json:"last_webhook_at,omitzero"`
	LastWebhookName string    `json:"last_webhook_action,omitempty"`
}

// registrationRecord is the app's set of webhook registrations (one per
// action for the Client ID, serving every installed organization) and the
// secret they were registered with.
type registrationRecord struct {
	ClientID  string            `json:"client_id"`
	URL       string            `json:"url"`
	Secret    string            `json:"secret"`
	IDs       map[string]string `json:"ids"` // action -> webhook id
	UpdatedAt time.Time         `json:"updated_at"`
	// Previous is the secret before the last rotation (a new public URL),
	// still accepted until PreviousUntil.
	Previous      string    `json:"previous,omitempty"`
	PreviousUntil time.Time `json:"previous_until,omitzero"`
}

func (s *store) loadInstallation(org string) (*installationRecord, error) {
	var rec installationRecord
	var found bool
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		found, err = s.get(tx, bucketInstallations, org, &rec)
		return err
	})
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

func (s *store) saveInstallation(rec *installationRecord) error {
	return s.update(func(tx *bbolt.Tx) error { return s.put(tx, bucketInstallations, rec.OrganizationID, rec) })
}

// modifyInstallation applies fn to the stored record in one transaction
// (a no-op when the organization is not installed).
func (s *store) modifyInstallation(org string, fn func(*installationRecord)) error {
	return s.update(func(tx *bbolt.Tx) error {
		var rec installationRecord
		found, err := s.get(tx, bucketInstallations, org, &rec)
		if err != nil || !found {
			return err
		}
		fn(&rec)
		return s.put(tx, bucketInstallations, org, &rec)
	})
}

func (s *store) deleteInstallation(org string) error {
	return s.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketInstallations).Delete([]byte(org)) })
}

func (s *store) installedOrganizations() ([]string, error) {
	var out []string
	err := s.view(func(tx *bbolt.Tx) error {
		out = s.keys(tx, bucketInstallations)
		return nil
	})
	return out, err
}

func (s *store) loadRegistration(clientID string) (*registrationRecord, error) {
	var rec registrationRecord
	var found bool
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		found, err = s.get(tx, bucketRegistrations, clientID, &rec)
		return err
	})
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

func (s *store) saveRegistration(rec *registrationRecord) error {
	return s.update(func(tx *bbolt.Tx) error { return s.put(tx, bucketRegistrations, rec.ClientID, rec) })
}

func (s *store) deleteRegistration(clientID string) error {
	return s.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRegistrations).Delete([]byte(clientID)) })
}

// snapshot reads, in one transaction, which organizations are installed,
// which license each holds (when known) and the registration set (nil when
// there is none) with its secrets: what
// the webhook secret cache needs. A license claimed by two installations
// maps to "" (a v3.3 webhook of it cannot be attributed). An installation
// record that does not decrypt still counts as installed, without a license.
func (s *store) snapshot(clientID string) (orgs map[string]bool, licenses map[int64]string, reg *registrationRecord, err error) {
	orgs, licenses = map[string]bool{}, map[int64]string{}
	err = s.view(func(tx *bbolt.Tx) error {
		if tx != nil && tx.Bucket(bucketInstallations) != nil {
			err := tx.Bucket(bucketInstallations).ForEach(func(k, v []byte) error {
				org := string(k)
				orgs[org] = true
				var rec installationRecord
				if s.open1(bucketInstallations, org, v, &rec) != nil || rec.LicenseID == 0 {
					return nil
				}
				if _, dup := licenses[rec.LicenseID]; dup {
					licenses[rec.LicenseID] = "" // claimed twice: attributable to neither
				} else {
					licenses[rec.LicenseID] = org
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		var r registrationRecord
		found, err := s.get(tx, bucketRegistrations, clientID, &r)
		if err != nil {
			return err
		}
		if found {
			reg = &r
		}
		return nil
	})
	return orgs, licenses, reg, err
}
