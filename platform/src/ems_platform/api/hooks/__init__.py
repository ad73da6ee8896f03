"""HTTP auth hooks for clustered brokers: EMQX 5 HTTP authn/authz, mosquitto-go-auth HTTP."""
