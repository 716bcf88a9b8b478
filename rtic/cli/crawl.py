"""`rtic crawl` (firms' websites into a crawl store) and `rtic extract` (one saved page's text)."""

from __future__ import annotations

from rtic import config
from rtic.cli.common import quiet_arg


def cmd_crawl(args) -> int:
    from rtic.crawl.crawler import CrawlOptions, crawl, parse_duration
    from rtic.crawl.fetch import FetchOptions

    fetch = FetchOptions(connect_timeout=args.connect_timeout, read_timeout=args.read_timeout, page_timeout=args.page_timeout,
                         max_page_bytes=args.max_page_bytes, allow_private=args.allow_private)
    options = CrawlOptions(concurrency=args.concurrency, delay=args.delay, max_crawl_delay=args.max_crawl_delay, max_pages=args.max_pages,
                           max_site_bytes=args.max_site_bytes, retries=args.retries, backoff=args.backoff, contact_url=args.contact,
                           recrawl_after=parse_duration(args.recrawl_after) if args.recrawl_after else None, workers=args.workers,
                           fetch=fetch)
    s = crawl(args.register, args.store, options, websites=args.websites)
    print("\n".join(s.lines()))
    return 0


def cmd_extract(args) -> int:
    from rtic.crawl.extract import extract_file

    result = extract_file(args.page, url=args.url)
    print(result.text if args.main_only else result.document())
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("crawl", help="fetch each firm's website into a crawl store (polite, resumable)",
                       description="Crawl the home page and up to --max-pages chosen pages of every firm's website (register column "
                       "'website') into a SQLite crawl store. Polite: one request at a time per host, --delay seconds apart, robots.txt "
                       "obeyed (Crawl-delay honoured up to --max-crawl-delay). Safe: private, loopback, link-local, multicast and "
                       "reserved addresses refused after DNS and on every redirect; page and site size caps. Resumable: kill it and "
                       "run the same command again; finished sites and fetched pages are kept.")
    p.add_argument("register", help="register CSV or Parquet with firm_id and website (name, postcode, company_number used for matching)")
    p.add_argument("--store", required=True, help="SQLite crawl store to create or continue")
    p.add_argument("--websites", metavar="FILE", help="firm_id,website CSV/Parquet joined to the register by company number (for a "
                   "Companies House file, which has no websites); rows meeting no firm are listed in STORE's .unmatched-websites.csv")
    p.add_argument("--concurrency", type=int, default=config.CRAWL_CONCURRENCY, help=f"sites crawled at once (default {config.CRAWL_CONCURRENCY})")
    p.add_argument("--delay", type=float, default=config.CRAWL_DELAY, help=f"seconds between requests to one host (default {config.CRAWL_DELAY:g})")
    p.add_argument("--max-crawl-delay", type=float, default=config.MAX_CRAWL_DELAY,
                   help=f"cap on a robots.txt Crawl-delay, seconds (default {config.MAX_CRAWL_DELAY:g})")
    p.add_argument("--max-pages", type=int, default=config.MAX_PAGES, help=f"pages per site besides the home page (default {config.MAX_PAGES})")
    p.add_argument("--max-page-bytes", type=int, default=config.MAX_PAGE_BYTES,
                   help=f"largest page body after decompression (default {config.MAX_PAGE_BYTES / 1e6:g} MB)")
    p.add_argument("--max-site-bytes", type=int, default=config.MAX_SITE_BYTES,
                   help=f"stop a site after this many bytes (default {config.MAX_SITE_BYTES / 1e6:g} MB)")
    p.add_argument("--connect-timeout", type=float, default=config.CONNECT_TIMEOUT, help=f"seconds (default {config.CONNECT_TIMEOUT:g})")
    p.add_argument("--read-timeout", type=float, default=config.READ_TIMEOUT, help=f"seconds without data (default {config.READ_TIMEOUT:g})")
    p.add_argument("--page-timeout", type=float, default=config.PAGE_TIMEOUT, help=f"seconds for a whole page (default {config.PAGE_TIMEOUT:g})")
    p.add_argument("--retries", type=int, default=config.RETRIES, help=f"retries on 429, 5xx and connection errors (default {config.RETRIES})")
    p.add_argument("--backoff", type=float, default=config.BACKOFF,
                   help=f"first retry wait in seconds, doubling with jitter (default {config.BACKOFF:g})")
    p.add_argument("--recrawl-after", help="refetch sites finished longer ago than this (e.g. 30d), with conditional requests")
    p.add_argument("--workers", type=int, default=config.CLI_CRAWL_WORKERS,
                   help="processes extracting text from pages, beside the fetching loop (default: cores, at most 4; 0: none)")
    p.add_argument("--contact", default=config.CONTACT_URL, help="contact URL named in the User-Agent")
    p.add_argument("--allow-private", action="store_true", help="allow private/loopback addresses (tests and local farms only)")
    quiet_arg(p)
    p.set_defaults(func=cmd_crawl)

    p = sub.add_parser("extract", help="print the main text extracted from one saved HTML page",
                       description="Extract one saved page (HTML, or .html.gz) as the crawler does: title, meta description, "
                       "JSON-LD descriptions and main-content blocks, one per line.")
    p.add_argument("page", help="saved HTML file")
    p.add_argument("--url", help="the page's URL (for relative links)")
    p.add_argument("--main-only", action="store_true", help="main-content blocks only (what the extraction benchmark scores)")
    p.set_defaults(func=cmd_extract)
