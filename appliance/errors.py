"""One tree of domain errors. Each class has a stable ``code``.

Officers see ``messages_vi.MESSAGES_VI[code]``; logs keep ``code`` and the English detail.
Adapters translate library errors at their boundary with ``raise ... from err``.
"""

from __future__ import annotations

from typing import ClassVar


class ApplianceError(Exception):
    code: ClassVar[str] = "unknown"

    def __init__(self, detail: str = "", **params: str) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.params = params


# --- capture -----------------------------------------------------------------------------
class CaptureError(ApplianceError):
    code = "capture_failed"


class NoScanner(CaptureError):
    code = "scanner_not_found"


class FeederEmpty(CaptureError):
    code = "feeder_empty"


class FeederJammed(CaptureError):
    code = "feeder_jammed"


class CoverOpen(CaptureError):
    code = "cover_open"


class ScannerBusy(CaptureError):
    code = "scanner_busy"


class DeviceGone(CaptureError):
    code = "device_gone"


class ScannerIOError(CaptureError):
    code = "scanner_io_error"


class ScanCancelled(CaptureError):
    code = "scan_cancelled"


class BadScannerOption(CaptureError):
    code = "bad_scanner_option"


class CameraError(CaptureError):
    code = "camera_failed"


class NoCamera(CameraError):
    code = "camera_not_found"


# --- input files -------------------------------------------------------------------------
class InputError(ApplianceError):
    code = "bad_input"


class UnreadableFile(InputError):
    code = "unreadable_file"


class NotAnImage(InputError):
    code = "not_an_image"


class DecompressionBomb(InputError):
    code = "image_too_large"


class ImageTooSmall(InputError):
    """Too few pixels (or millimetres, at the scan's resolution) to be a page: an icon, a thumbnail, a strip."""

    code = "image_too_small"


class NoPages(InputError):
    code = "no_pages"


class EncryptedPdf(InputError):
    code = "encrypted_pdf"


class TooManyPages(InputError):
    """More pages in one request (or intake) than the page budget (settings.capture.max_pages)."""

    code = "too_many_pages"


class SignedPdf(InputError):
    """A digitally signed PDF must be kept byte for byte, never re-rendered."""

    code = "signed_pdf"


# --- processing --------------------------------------------------------------------------
class ProcessingError(ApplianceError):
    code = "processing_failed"


class OcrFailed(ProcessingError):
    code = "ocr_failed"


class OcrUnavailable(ProcessingError):
    code = "ocr_unavailable"


class PdfBuildFailed(ProcessingError):
    code = "pdf_build_failed"


class StorageError(ApplianceError):
    code = "storage_failed"


class DiskFull(StorageError):
    """Free space below the floor (settings.storage.min_free_mb), or a write failed with ENOSPC."""

    code = "disk_full"


# --- codes and fields (validation problems are reported, not always raised) --------------
class InvalidCode(ApplianceError):
    code = "invalid_code"


class InvalidDossierCode(InvalidCode):
    code = "invalid_dossier_code"


class InvalidTthcCode(InvalidCode):
    code = "invalid_tthc_code"


class InvalidPersonalId(InvalidCode):
    code = "invalid_personal_id"


class InvalidEnterpriseCode(InvalidCode):
    code = "invalid_enterprise_code"


class InvalidDate(InvalidCode):
    code = "invalid_date"


class InvalidResultCode(InvalidCode):
    code = "invalid_result_code"


# --- signing (token, PAdES, packages) ------------------------------------------------------
class SignError(ApplianceError):
    code = "sign_failed"


class TokenModuleError(SignError):
    """The PKCS#11 module cannot be loaded or crashed."""

    code = "token_module_failed"


class TokenNotFound(SignError):
    code = "token_not_found"


class TokenAmbiguous(SignError):
    code = "token_ambiguous"


class TokenRemoved(SignError):
    code = "token_removed"


class SignerCrashed(SignError):
    code = "signer_crashed"


class PinRequired(SignError):
    code = "pin_required"


class PinIncorrect(SignError):
    code = "pin_incorrect"


class PinFinalTry(SignError):
    """Refused before login: one more wrong PIN would lock the token."""

    code = "pin_final_try"


class PinLocked(SignError):
    code = "pin_locked"


class CertificateNotFound(SignError):
    code = "certificate_not_found"


class CertificateExpired(SignError):
    code = "certificate_expired"


class CertificateNotYetValid(SignError):
    code = "certificate_not_yet_valid"


class CertificateNoNonRepudiation(SignError):
    code = "certificate_no_non_repudiation"


class PrivateKeyNotFound(SignError):
    code = "private_key_not_found"


class PdfSignFailed(SignError):
    code = "pdf_sign_failed"


class PackageError(SignError):
    code = "package_failed"


# Circular 15/2025/TT-BKHCN: refused before any signature is made and before the PIN is used.
class CertificateUntrusted(SignError):
    """The certificate does not chain to a trusted root (national roots pinned by fingerprint, or
    configured ones), or a CA certificate on the way is invalid."""

    code = "certificate_untrusted"


class CertificateRevoked(SignError):
    code = "certificate_revoked"


class RevocationUnknown(SignError):
    """Revocation could not be checked (offline, no cached answer) and `sign.revocation_unknown` is
    "block"."""

    code = "certificate_revocation_unknown"


class CertificateKeyTooSmall(SignError):
    """RSA under 2048 bits or ECDSA under 256 bits."""

    code = "certificate_key_too_small"


# Remote signing services (CSC, VNPT SmartCA, Viettel MySign): the officer approves on the phone.
class RemoteSigningError(SignError):
    code = "remote_signing_error"


class RemoteSigningFailed(RemoteSigningError):
    code = "remote_signing_failed"


class RemoteSigningNotConfigured(RemoteSigningError):
    """The officer has no remote signing provider/credential, or the provider is not in the settings."""

    code = "remote_signing_not_configured"


class RemoteSigningUnavailable(RemoteSigningError):
    code = "remote_signing_unavailable"


class RemoteSigningRejected(RemoteSigningError):
    code = "remote_signing_rejected"


class RemoteSigningExpired(RemoteSigningError):
    code = "remote_signing_expired"


class RemoteSigningTimeout(RemoteSigningError):
    code = "remote_signing_timeout"


class RemoteSigningQuota(RemoteSigningError):
    code = "remote_signing_quota"


class RemoteCertificateRefused(RemoteSigningError):
    """The provider refused to sign: the credential's certificate is expired or revoked (MySign 13004)."""

    code = "remote_certificate_refused"


class RemoteSigningBusy(RemoteSigningError):
    """The officer already has a batch waiting for approval."""

    code = "remote_signing_busy"


class RemoteResultNeedsToken(RemoteSigningError):
    """Results carry the organisation's certificate (Decree 30/2020): not a personal remote credential."""

    code = "remote_result_needs_token"


class SignatureAlgorithmUnavailable(SignError):
    """The token cannot make a signature the policy allows (e.g. no RSASSA-PSS under "require")."""

    code = "signature_algorithm_unavailable"


# --- outbox (store-and-forward to the province) -------------------------------------------
class OutboxError(ApplianceError):
    code = "outbox_failed"


class BrokerUnreachable(OutboxError):
    code = "broker_unreachable"


class BrokerDenied(OutboxError):
    code = "broker_denied"


class PackageRejected(OutboxError):
    code = "package_rejected"


# --- the workflow (appliance.workflow and the modules that own a document's life) -------------
class WorkflowError(ApplianceError):
    code = "workflow_refused"


class IllegalTransition(WorkflowError):
    code = "illegal_transition"


class DocumentFrozen(WorkflowError):
    """A signed (or later) document cannot change: a correction is a new version."""

    code = "document_frozen"


class DocumentBusy(WorkflowError):
    code = "document_busy"


class NotFound(WorkflowError):
    code = "not_found"


class FormInvalid(WorkflowError):
    """Some fields of a form are wrong: ``errors`` maps each field to the officer's sentence."""

    code = "form_invalid"

    def __init__(self, errors: dict[str, str], detail: str = "") -> None:
        super().__init__(detail or "invalid: " + ", ".join(sorted(errors)))
        self.errors = errors


class DuplicateResultCode(WorkflowError):
    code = "duplicate_result_code"


class NotReadyToSign(WorkflowError):
    code = "not_ready_to_sign"


class CertificateMismatch(WorkflowError):
    """The token's certificate names someone else than the signed-in officer: needs a confirmation."""

    code = "certificate_mismatch"


class NothingChosen(WorkflowError):
    code = "nothing_chosen"


# --- accounts (appliance.accounts) -----------------------------------------------------------
class AccountError(ApplianceError):
    code = "account_refused"


class AccountNotFound(AccountError):
    code = "account_not_found"


class AccountExists(AccountError):
    code = "account_exists"


class InvalidUsername(AccountError):
    code = "invalid_username"


class FullNameMissing(AccountError):
    code = "full_name_missing"


class InvalidRole(AccountError):
    code = "invalid_role"


class PasswordTooShort(AccountError):
    code = "password_too_short"


class PasswordIncorrect(AccountError):
    code = "password_incorrect"


class PasswordUnchanged(AccountError):
    code = "password_unchanged"


class LastSupervisor(AccountError):
    """Deactivating or demoting this account would leave no active supervisor."""

    code = "last_supervisor"


def all_error_classes() -> list[type[ApplianceError]]:
    """Every error class in the tree (used by the test that checks messages exist)."""
    seen: list[type[ApplianceError]] = []
    todo: list[type[ApplianceError]] = [ApplianceError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen
