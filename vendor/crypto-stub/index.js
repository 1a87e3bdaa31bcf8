"use strict";
// Stand-in: matrix-bot-sdk imports the crypto binding eagerly even when encryption is off.
// Every export exists so the import succeeds; using any of them fails loudly.
function unavailable(name) {
  const fail = function () { throw new Error("End-to-end encryption is unavailable: @matrix-org/matrix-sdk-crypto-nodejs is a stand-in (" + name + ")"); };
  return new Proxy(fail, { construct: fail, apply: fail, get: (t, p) => (p === "prototype" ? {} : p === "name" ? name : undefined) });
}
const names = "Attachment BackupDecryptionKey BackupKeys CrossSigningStatus Curve25519PublicKey DecryptedRoomEvent DeviceId DeviceKeyAlgorithm DeviceKeyAlgorithmName DeviceKeyId DeviceLists Ed25519PublicKey Ed25519Signature EncryptedAttachment EncryptionAlgorithm EncryptionSettings HistoryVisibility IdentityKeys KeysBackupRequest KeysClaimRequest KeysQueryRequest KeysUploadRequest MaybeSignature MegolmV1BackupKey OlmMachine RequestType RoomId RoomKeyCounts RoomMessageRequest ServerName ShieldColor ShieldState ShieldStateCode Signature SignatureState SignatureUploadRequest SignatureVerification Signatures StoreType ToDeviceRequest UserId Versions getVersions ".trim().split(" ");
for (const name of names) module.exports[name] = unavailable(name);
