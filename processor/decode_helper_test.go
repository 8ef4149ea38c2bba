package processor

import "github.com/lcpipe/lcpipe/internal/livechat"

func livechatDecode(b []byte) (*livechat.Webhook, error) { return livechat.Decode(b) }
