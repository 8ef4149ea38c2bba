package kafka

// WaitForLeaders exposes waitForLeaders to the external tests.
var WaitForLeaders = waitForLeaders
