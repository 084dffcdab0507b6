//! Shared counters for gateway replicas on Redis (`[cluster] redis_url`). A rate decision is
//! one server-side script over every limit of a call, on Redis's clock, so three replicas
//! admit exactly what one would: GCRA (one theoretical arrival time per limit, in µs), all
//! limits charged or none, each key expiring two periods after its last use.

use crate::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::time::Duration;

/// A rate limit's window, in µs (limits are per minute).
pub const PERIOD_US: i64 = 60_000_000;

// Numbers are stored with `%.0f`: Lua's own conversion would write 1.8e+15 µs with 14
// significant digits, a tenth of a second lost.

/// Charges every limit or none. KEYS: the limits' TAT keys; ARGV: limit and cost per key.
/// Returns {1, 0, 0, now, tat...} when admitted (the new TATs), {0, i, wait, now, tat...}
/// when limit i refuses for `wait` µs (the unchanged TATs), {-1, i} when a cost can never fit.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[#ARGV])
local tats, news = {}, {}
local worst, worst_i = -1, 0
for i = 1, #KEYS do
  local limit = math.max(tonumber(ARGV[2 * i - 1]), 1)
  local interval = math.floor(period / limit)
  local inc = tonumber(ARGV[2 * i]) * interval
  if inc > period then return {-1, i} end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  tats[i] = tat
  local new = math.max(tat, now) + inc
  if new - now > period and new - now - period > worst then
    worst, worst_i = new - now - period, i
  end
  news[i] = new
end
local out
if worst >= 0 then
  out = {0, worst_i, worst, now}
  for i = 1, #KEYS do out[#out + 1] = tats[i] end
  return out
end
out = {1, 0, 0, now}
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', math.floor(2 * period / 1000))
  out[#out + 1] = news[i]
end
return out
";

/// Corrects token charges once usage is known. KEYS: TAT keys; ARGV: limit per key, then the
/// delta in units and the period. Debt moves the TAT later; a refund never before now.
const SETTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[#ARGV - 1])
local period = tonumber(ARGV[#ARGV])
for i = 1, #KEYS do
  local interval = math.floor(period / math.max(tonumber(ARGV[i]), 1))
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local shift = delta * interval
  local new = tat
  if delta > 0 then
    new = math.max(tat, now) + shift
  elseif tat > now then
    new = math.max(tat + shift, now)
  end
  if new ~= tat then
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', math.floor(2 * period / 1000))
  end
end
return 1
";

/// One limit of a call.
#[derive(Clone, Copy, Debug)]
pub struct Limit<'a> {
    /// The counter's name (`key:requests:<uid>`); the connection adds its prefix.
    pub key: &'a str,
    /// Units per minute.
    pub limit: u32,
    pub cost: u64,
}

/// A decision over a call's limits, with each limit's TAT (µs, on Redis's clock) after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted {
        now: i64,
        tats: Vec<i64>,
    },
    Wait {
        index: usize,
        wait: Duration,
        now: i64,
        tats: Vec<i64>,
    },
    /// The cost is more than the limit allows in a whole period.
    TooLarge {
        index: usize,
    },
}

/// A reconnecting connection to the shared Redis.
#[derive(Clone)]
pub struct Shared {
    conn: ConnectionManager,
    prefix: String,
    admit: Script,
    settle: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl Shared {
    /// Connects to `url` (`redis://HOST:PORT/DB`; a password only through the environment),
    /// with `timeout` on connecting and on every command. Counters live under `prefix`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_error)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
        })
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(redis_error)
    }

    /// Decides a call against all its limits at once.
    pub async fn admit(&self, limits: &[Limit<'_>]) -> Result<Admission, StoreError> {
        let mut inv = self.admit.prepare_invoke();
        for l in limits {
            inv.key(format!("{}{}", self.prefix, l.key));
        }
        for l in limits {
            inv.arg(l.limit).arg(l.cost);
        }
        inv.arg(PERIOD_US);
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        let bad = || StoreError::Redis(format!("the rate script answered {out:?}"));
        let index = |i: i64| usize::try_from(i - 1).ok().filter(|i| *i < limits.len());
        match out.first() {
            Some(-1) => Ok(Admission::TooLarge {
                index: out.get(1).copied().and_then(index).ok_or_else(bad)?,
            }),
            Some(1) if out.len() == 4 + limits.len() => Ok(Admission::Admitted {
                now: out[3],
                tats: out[4..].to_vec(),
            }),
            Some(0) if out.len() == 4 + limits.len() => Ok(Admission::Wait {
                index: index(out[1]).ok_or_else(bad)?,
                wait: Duration::from_micros(u64::try_from(out[2]).unwrap_or(0)),
                now: out[3],
                tats: out[4..].to_vec(),
            }),
            _ => Err(bad()),
        }
    }

    /// Moves token limits' TATs by `delta` units (debt when positive, refund when negative).
    pub async fn settle(&self, limits: &[(&str, u32)], delta: i64) -> Result<(), StoreError> {
        if limits.is_empty() || delta == 0 {
            return Ok(());
        }
        let mut inv = self.settle.prepare_invoke();
        for (k, _) in limits {
            inv.key(format!("{}{}", self.prefix, k));
        }
        for (_, l) in limits {
            inv.arg(*l);
        }
        inv.arg(delta).arg(PERIOD_US);
        let mut c = self.conn.clone();
        inv.invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(redis_error)
    }
}
