// Who is signed in: set once /v1/whoami answered; views read it to show or hide operator fields.
export const session = { kind: null, tenantId: null, expiresAt: null };
