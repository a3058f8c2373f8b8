"""What the officer reads: one plain Vietnamese sentence per error code, saying what to do."""

from __future__ import annotations

from appliance.errors import ApplianceError

MESSAGES_VI: dict[str, str] = {
    "unknown": "Đã có lỗi không xác định. Hãy thử lại; nếu vẫn lỗi, hãy báo cho cán bộ CNTT.",
    # capture
    "capture_failed": "Không chụp/quét được trang này. Hãy thử lại.",
    "scanner_not_found": "Không tìm thấy máy quét. Hãy kiểm tra cáp và nguồn điện của máy quét rồi thử lại.",
    "feeder_empty": "Khay nạp giấy đang trống. Hãy đặt tài liệu vào khay rồi bấm Quét.",
    "feeder_jammed": "Giấy bị kẹt trong máy quét. Hãy gỡ tờ giấy bị kẹt, đặt lại tài liệu rồi quét lại.",
    "cover_open": "Nắp máy quét đang mở. Hãy đóng nắp rồi bấm Quét.",
    "scanner_busy": "Máy quét đang bận với yêu cầu khác. Hãy chờ một lát rồi thử lại.",
    "device_gone": "Máy quét vừa bị ngắt kết nối. Hãy cắm lại cáp USB, chờ vài giây rồi quét lại.",
    "scanner_io_error": "Máy quét báo lỗi truyền dữ liệu. Hãy tắt, bật lại máy quét rồi quét lại.",
    "scan_cancelled": "Lượt quét đã bị hủy. Các trang quét trước đó vẫn được giữ nguyên.",
    "bad_scanner_option": "Máy quét không hỗ trợ thiết lập này. Hãy chọn thiết lập khác.",
    "camera_failed": "Không lấy được hình từ máy chụp tài liệu. Hãy kiểm tra cáp rồi thử lại.",
    "camera_not_found": "Không tìm thấy máy chụp tài liệu. Hãy cắm máy chụp vào rồi thử lại.",
    # input files
    "bad_input": "Tệp này không dùng được. Hãy chọn tệp khác.",
    "unreadable_file": "Không đọc được tệp này (tệp hỏng hoặc không tồn tại). Hãy chọn lại tệp.",
    "not_an_image": "Tệp này không phải ảnh hay PDF. Hãy chọn tệp ảnh (JPG, PNG, TIFF) hoặc PDF.",
    "image_too_large": "Ảnh quá lớn để xử lý an toàn. Hãy quét lại ở độ phân giải 200–300 dpi.",
    "image_too_small": "Ảnh quá nhỏ hoặc quá hẹp, không phải ảnh một trang tài liệu. Hãy quét hoặc chụp lại "
    "cả trang ở độ phân giải 200–300 dpi.",
    "no_pages": "Không có trang nào để số hóa. Hãy quét hoặc chọn ít nhất một trang.",
    "encrypted_pdf": "Tệp PDF có mật khẩu nên không mở được. Hãy dùng bản không đặt mật khẩu.",
    "too_many_pages": "Tệp gửi lên có quá nhiều trang cho một lần; hãy tách thành nhiều tệp nhỏ hơn rồi tải lên "
    "từng phần.",
    "signed_pdf": "Tệp PDF này đã được ký số nên được giữ nguyên bản gốc, không chuyển thành ảnh. "
    "Hãy đính kèm tệp như một văn bản điện tử.",
    # processing
    "processing_failed": "Không xử lý được trang này. Hãy quét lại trang đó.",
    "ocr_failed": "Không nhận dạng được chữ trên trang này. Trang vẫn được lưu; hãy nhập thông tin bằng tay.",
    "ocr_unavailable": "Chức năng nhận dạng chữ chưa sẵn sàng trên thiết bị. Hãy báo cho cán bộ CNTT.",
    "pdf_build_failed": "Không tạo được tệp PDF của hồ sơ. Hãy bấm Thử lại; nếu vẫn lỗi, hãy báo cho cán bộ CNTT.",
    "storage_failed": "Không ghi được dữ liệu vào bộ nhớ thiết bị. Hãy báo cho cán bộ CNTT.",
    "disk_full": "Bộ nhớ của thiết bị sắp đầy nên chưa nhận thêm trang mới (vẫn xem, tìm và ký được các hồ sơ "
    "đã có); hãy báo cán bộ CNTT giải phóng dung lượng.",
    # codes
    "invalid_code": "Mã không đúng định dạng. Hãy kiểm tra lại.",
    "invalid_dossier_code": "Mã hồ sơ không đúng dạng «mã cơ quan-yyMMdd-số thứ tự», "
    "ví dụ 000.00.19.H12-230412-0007. Hãy kiểm tra lại.",
    "invalid_tthc_code": "Mã thủ tục hành chính không đúng dạng «d.dddddd», ví dụ 1.000894. Hãy kiểm tra lại.",
    "invalid_personal_id": "Số định danh cá nhân phải gồm đúng 12 chữ số. Hãy kiểm tra lại.",
    "invalid_enterprise_code": "Mã số doanh nghiệp phải gồm 10 chữ số hoặc dạng 10 chữ số-3 chữ số. Hãy kiểm tra lại.",
    "invalid_date": "Ngày tháng không hợp lệ. Hãy kiểm tra lại.",
    "invalid_result_code": "Mã kết quả không đúng định dạng đã cấu hình. Hãy kiểm tra lại mã kết quả.",
    # signing
    "sign_failed": "Không ký số được tài liệu. Tài liệu vẫn chưa ký và được giữ nguyên; hãy thử lại.",
    "token_module_failed": "Không dùng được trình điều khiển của thiết bị ký số (token). "
    "Hãy rút token ra, cắm lại rồi thử lại; nếu vẫn lỗi, hãy báo cho cán bộ CNTT.",
    "token_not_found": "Không tìm thấy thiết bị ký số (token). Hãy cắm token vào máy rồi thử lại.",
    "token_ambiguous": "Đang cắm nhiều token. Hãy rút bớt, chỉ để lại token cần dùng, hoặc chọn token theo số sê-ri.",
    "token_removed": "Token bị rút ra hoặc mất kết nối trong khi ký. Các tài liệu chưa được ký vẫn được giữ "
    "nguyên; hãy cắm lại token rồi ký lại.",
    "signer_crashed": "Chương trình ký số bị dừng đột ngột. Các tài liệu chưa được ký vẫn được giữ nguyên; "
    "hãy rút và cắm lại token rồi ký lại.",
    "pin_required": "Chưa nhập mã PIN của token. Hãy nhập mã PIN rồi ký lại.",
    "pin_incorrect": "Mã PIN không đúng. Hệ thống không tự thử lại; hãy kiểm tra kỹ mã PIN trước khi "
    "nhập lần nữa vì nhập sai nhiều lần sẽ khóa token.",
    "pin_final_try": "Token chỉ còn một lần nhập PIN; nhập sai lần nữa token sẽ bị khóa. Hệ thống không ký "
    "tự động; hãy liên hệ cán bộ CNTT hoặc nhà cung cấp chứng thư số.",
    "pin_locked": "Mã PIN của token đã bị khóa. Hãy liên hệ nhà cung cấp chứng thư số để mở khóa.",
    "certificate_not_found": "Không tìm thấy chứng thư số phù hợp trên token. Hãy kiểm tra đúng token "
    "của cá nhân hoặc của cơ quan.",
    "certificate_expired": "Chứng thư số trên token đã hết hạn nên không ký được. Hãy gia hạn chứng thư số "
    "với nhà cung cấp.",
    "certificate_not_yet_valid": "Chứng thư số trên token chưa đến ngày có hiệu lực. Hãy kiểm tra đồng hồ "
    "của thiết bị hoặc dùng chứng thư khác.",
    "certificate_no_non_repudiation": "Chứng thư số này không được phép dùng để ký văn bản (thiếu mục đích "
    "chống chối bỏ). Hãy dùng chứng thư ký số khác.",
    "private_key_not_found": "Token không có khóa bí mật đi kèm chứng thư số. Hãy báo cho cán bộ CNTT.",
    "pdf_sign_failed": "Không ký được tệp PDF này. Tài liệu vẫn chưa ký; hãy số hóa lại hoặc báo cho cán bộ CNTT.",
    "package_failed": "Không tạo hoặc đọc được gói hồ sơ điện tử. Hãy kiểm tra các tệp trong gói rồi thử lại.",
    "certificate_untrusted": "Chứng thư số trên token không thuộc chuỗi tin cậy đến chứng thư gốc quốc gia "
    "hoặc chứng thư gốc đã được cấu hình, nên hệ thống không ký. Hãy báo cho cán bộ CNTT của Sở Khoa học và "
    "Công nghệ để kiểm tra chứng thư.",
    "certificate_revoked": "Chứng thư số trên token đã bị thu hồi nên không được dùng để ký. Hãy liên hệ nhà "
    "cung cấp chứng thư số để được cấp chứng thư mới.",
    "certificate_revocation_unknown": "Chưa kiểm tra được tình trạng thu hồi của chứng thư số (mất mạng và "
    "chưa có kết quả kiểm tra đã lưu), nên hệ thống chưa ký. Hãy thử lại khi có mạng.",
    "certificate_key_too_small": "Khóa của chứng thư số quá ngắn (RSA dưới 2048 bit hoặc ECDSA dưới 256 bit), "
    "không đáp ứng Thông tư 15/2025/TT-BKHCN. Hãy đề nghị nhà cung cấp cấp chứng thư số mới.",
    "signature_algorithm_unavailable": "Token không hỗ trợ thuật toán ký số theo quy định (RSASSA-PSS hoặc "
    "ECDSA), nên hệ thống không ký. Hãy báo cho cán bộ CNTT.",
    "remote_signing_error": "Ký số từ xa không thực hiện được. Không tài liệu nào bị ký dở; các tài liệu vẫn "
    "chờ ký, hãy thử lại sau.",
    "remote_signing_failed": "Dịch vụ ký số từ xa không ký được lô tài liệu này. Không tài liệu nào bị ký dở; "
    "các tài liệu vẫn chờ ký, hãy thử lại sau.",
    "remote_signing_not_configured": "Bạn chưa khai báo dịch vụ ký số từ xa (nhà cung cấp, mã chứng thư, mã "
    "người dùng). Hãy khai báo ở mục «Ký số từ xa» trên trang Ký số, hoặc nhờ cán bộ phụ trách khai báo.",
    "remote_signing_unavailable": "Chưa kết nối được dịch vụ ký số từ xa (mất mạng hoặc dịch vụ đang dừng). "
    "Các tài liệu vẫn chờ ký; hãy thử lại khi có mạng.",
    "remote_signing_rejected": "Yêu cầu ký đã bị từ chối trên điện thoại. Không tài liệu nào được ký; các "
    "tài liệu vẫn chờ ký.",
    "remote_signing_expired": "Yêu cầu ký đã hết hạn trước khi được xác nhận trên điện thoại. Không tài liệu "
    "nào được ký; hãy bấm Ký lại và xác nhận trên điện thoại trong thời gian cho phép.",
    "remote_signing_timeout": "Đã hết thời gian chờ xác nhận trên điện thoại. Không tài liệu nào được ký; "
    "hãy bấm Ký lại và xác nhận trên điện thoại.",
    "remote_signing_quota": "Tài khoản ký số từ xa đã hết lượt ký. Hãy liên hệ nhà cung cấp dịch vụ để gia "
    "hạn gói; các tài liệu vẫn chờ ký.",
    "remote_certificate_refused": "Nhà cung cấp dịch vụ ký số từ xa báo chứng thư số của bạn đã hết hạn hoặc "
    "bị thu hồi. Không tài liệu nào được ký; hãy liên hệ nhà cung cấp để gia hạn hoặc cấp lại chứng thư.",
    "remote_signing_busy": "Bạn đang có một lô tài liệu chờ xác nhận trên điện thoại. Hãy xác nhận hoặc chờ "
    "lô đó kết thúc rồi ký tiếp.",
    "remote_result_needs_token": "Kết quả giải quyết phải ký bằng chứng thư số của cơ quan (token của cơ "
    "quan), không ký bằng chứng thư cá nhân từ xa. Hãy bỏ chọn kết quả hoặc ký bằng token.",
    "outbox_failed": "Không gửi được gói hồ sơ lên tỉnh. Gói vẫn được giữ an toàn trên thiết bị và sẽ tự "
    "gửi lại; nếu lỗi kéo dài hãy báo cho cán bộ CNTT.",
    "broker_unreachable": "Chưa kết nối được máy chủ của tỉnh (mất mạng hoặc máy chủ đang dừng). Các gói "
    "vẫn được giữ trên thiết bị và sẽ tự gửi khi có mạng.",
    "broker_denied": "Máy chủ của tỉnh từ chối quyền gửi của thiết bị này (chứng thư hoặc phân quyền sai). "
    "Hãy báo cho cán bộ CNTT của tỉnh.",
    # the workflow
    "workflow_refused": "Không thực hiện được thao tác này với tài liệu ở trạng thái hiện tại. Hãy tải lại trang.",
    "illegal_transition": "Tài liệu đang ở trạng thái không cho phép thao tác này. Hãy tải lại trang để xem "
    "trạng thái mới nhất.",
    "document_frozen": "Tài liệu đã ký số nên không sửa được. Nếu cần sửa, hãy bấm «Tạo bản điều chỉnh».",
    "document_busy": "Tài liệu đang được xử lý; hãy chờ xử lý xong rồi thao tác lại.",
    "not_found": "Không tìm thấy hồ sơ hoặc tài liệu này.",
    "form_invalid": "Biểu mẫu có thông tin chưa đúng; hãy sửa các ô được đánh dấu.",
    "duplicate_result_code": "Mã kết quả này đã được dùng cho tài liệu khác. Hãy nhập mã khác hoặc bấm «Cấp mã».",
    "not_ready_to_sign": "Một số tài liệu đã được ký hoặc chưa sẵn sàng để ký. Hãy xem lại danh sách.",
    "certificate_mismatch": "Chứng thư số trên token không mang tên của bạn. Nếu vẫn muốn ký bằng chứng thư "
    "này, hãy đánh dấu ô xác nhận rồi ký lại.",
    "nothing_chosen": "Hãy chọn ít nhất một tài liệu để ký.",
    "package_rejected": "Kho dữ liệu của tỉnh từ chối gói hồ sơ này; xem lý do, sửa hồ sơ rồi bấm gửi lại.",
    # accounts
    "account_refused": "Không thực hiện được thay đổi này với tài khoản. Hãy tải lại trang rồi thử lại.",
    "account_not_found": "Không có tài khoản này. Hãy kiểm tra lại tên đăng nhập.",
    "account_exists": "Tên đăng nhập này đã có. Hãy chọn tên đăng nhập khác.",
    "invalid_username": "Tên đăng nhập chỉ gồm chữ không dấu a-z, số 0-9, dấu chấm, gạch dưới hoặc gạch ngang "
    "(2–64 ký tự).",
    "full_name_missing": "Hãy nhập họ và tên của cán bộ.",
    "invalid_role": "Vai trò không hợp lệ: chỉ có cán bộ hoặc lãnh đạo.",
    "password_too_short": "Mật khẩu quá ngắn: cần ít nhất 10 ký tự.",
    "password_incorrect": "Mật khẩu hiện tại không đúng. Hãy nhập lại.",
    "password_unchanged": "Mật khẩu mới phải khác mật khẩu hiện tại.",
    "last_supervisor": "Không thể khóa hoặc hạ vai trò tài khoản này vì khi đó sẽ không còn lãnh đạo nào "
    "quản lý tài khoản. Hãy cho một tài khoản khác làm lãnh đạo trước.",
}


def message_for(err: BaseException) -> str:
    """The officer's sentence for any exception; unknown errors get the generic sentence."""
    code = err.code if isinstance(err, ApplianceError) else "unknown"
    return MESSAGES_VI.get(code, MESSAGES_VI["unknown"])
