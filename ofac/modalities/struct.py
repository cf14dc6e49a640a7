from .table import COMMON_ATTRS, TOKEN_ATTRS, Adaptor, Modality, Preprocessor
from .text import TEXT_TARGET

MODALITY = Modality(
    name="STRUCT",
    doc="structured data (a table, triples or a database schema) linearized to text",
    order=8,
    attrs=COMMON_ATTRS + tuple(a for a in TOKEN_ATTRS if a.name != "no_punctuation"),
    preprocessors=(
        Preprocessor("table", "rows joined with ` : ` and ` | `, lower-cased",
                     params=(("row_separator", " | "), ("col_separator", " : "))),
        Preprocessor("database", "`| db_id | table : col , col ...` schema serialization",
                     params=(("with_content", True),)),
    ),
    adaptors=(Adaptor("text", "linearized tokens share the token embedding", target=TEXT_TARGET),),
    default_adaptor={"encoder": "text", "decoder": "text"},
    token_like=True,
)
