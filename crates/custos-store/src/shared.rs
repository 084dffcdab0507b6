//! Shared state for gateway replicas on Redis (`[cluster] redis_url`): rate limits, budget
//! holds, idempotency claims and change notices. Every decision is one server-side script on
//! Redis's clock, so three replicas decide exactly what one would: GCRA for rates (one
//! theoretical arrival time per limit, in µs), holds and spend for budgets (in nano-units,
//! holds expiring if their replica dies), claim-then-store for idempotency keys.

use crate::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::time::Duration;

/// A rate limit's window, in µs (limits are per minute).
pub const PERIOD_US: i64 = 60_000_000;

/// Every replica of a deployment keeps its shared state under this prefix.
pub const PREFIX: &str = "custos:";
/// The channel change notices travel on (`TOPIC:SENDER`; topics: keys, directory, finops,
/// releases, models).
pub const CHANGES: &str = "changes";

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

/// Reads TATs without charging. KEYS: the limits' TAT keys. Returns {now, tat...} (µs).
const PEEK: &str = r"
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000000 + tonumber(t[2])}
for i = 1, #KEYS do out[#out + 1] = tonumber(redis.call('GET', KEYS[i]) or '0') end
return out
";

/// Holds a call's estimate on every budget it is charged to, or on none. KEYS: one hash per
/// budget window (fields `spent`, `held`; its holds in the sorted set KEY..':h', member
/// `ID:ESTIMATE`, scored by expiry). ARGV: hold id, hold lifetime (ms), force ('1': hold
/// even over the amount, for a spend override), then per key: amount (nanos; -1: never
/// refuses), spent known elsewhere (the floor), estimate, expiry of the window (ms).
/// Returns {1, over...} (held; the indexes that are over their amount) or {0, i, spent, held}.
const HOLD: &str = r"
local function purge(k, now)
  local z = k .. ':h'
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 128)
  for _, m in ipairs(old) do
    local a = string.match(m, ':(%d+)$')
    if a then redis.call('HINCRBY', k, 'held', '-' .. a) end
    redis.call('ZREM', z, m)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local deadline = now + tonumber(ARGV[2])
local force = ARGV[3] == '1'
local over = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  purge(k, now)
  local b = 3 + (i - 1) * 4
  local amount = tonumber(ARGV[b + 1])
  local est = tonumber(ARGV[b + 3])
  local spent = tonumber(redis.call('HGET', k, 'spent') or '0')
  if tonumber(ARGV[b + 2]) > spent then
    redis.call('HSET', k, 'spent', ARGV[b + 2])
    spent = tonumber(ARGV[b + 2])
  end
  local held = tonumber(redis.call('HGET', k, 'held') or '0')
  if amount >= 0 and (spent + held >= amount or spent + held + est > amount) then
    if not force then
      return {0, i, redis.call('HGET', k, 'spent') or '0', redis.call('HGET', k, 'held') or '0'}
    end
    over[#over + 1] = i
  end
end
for i = 1, #KEYS do
  local k = KEYS[i]
  local b = 3 + (i - 1) * 4
  redis.call('HINCRBY', k, 'held', ARGV[b + 3])
  redis.call('ZADD', k .. ':h', deadline, id .. ':' .. ARGV[b + 3])
  redis.call('PEXPIREAT', k, ARGV[b + 4])
  redis.call('PEXPIREAT', k .. ':h', ARGV[b + 4])
end
local out = {1}
for _, i in ipairs(over) do out[#out + 1] = i end
return out
";

/// Releases a hold and adds the call's cost. KEYS: the budget window hashes; ARGV: the hold's
/// member, its estimate, the cost (nanos). A hold that already expired is not released
/// twice. Returns each budget's spend after.
const SPEND: &str = r"
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  if redis.call('ZREM', k .. ':h', ARGV[1]) == 1 then
    redis.call('HINCRBY', k, 'held', '-' .. ARGV[2])
  end
  if ARGV[3] ~= '0' then
    redis.call('HINCRBY', k, 'spent', ARGV[3])
  end
  out[i] = redis.call('HGET', k, 'spent') or '0'
end
return out
";

/// Claims an idempotency key or reports what holds it. KEYS[1]: the key's hash; ARGV: the
/// request's SHA-256, the claimant, the claim's lifetime (ms).
const CLAIM: &str = r"
local v = redis.call('HMGET', KEYS[1], 'sha', 'state')
if not v[1] then
  redis.call('HSET', KEYS[1], 'sha', ARGV[1], 'state', 'run', 'holder', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'run'}
end
if v[1] ~= ARGV[1] then return {'mismatch'} end
if v[2] == 'run' then return {'inflight'} end
local d = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')
return {'done', d[1] or '', d[2] or '', d[3] or ''}
";

/// Stores the response of a claimed key (only by its claimant). ARGV: claimant, status,
/// headers, body, lifetime (ms).
const COMPLETE: &str = r"
local v = redis.call('HMGET', KEYS[1], 'holder', 'state')
if v[1] ~= ARGV[1] or v[2] ~= 'run' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'holder')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// Frees a claim that did not complete (only its claimant's).
const ABANDON: &str = r"
local v = redis.call('HMGET', KEYS[1], 'holder', 'state')
if v[1] == ARGV[1] and v[2] == 'run' then redis.call('DEL', KEYS[1]) return 1 end
return 0
";

/// One budget a call is charged to.
#[derive(Clone, Debug)]
pub struct BudgetHold<'a> {
    /// The window's counter (`b:TENANT:BUDGET:WINDOW_START`); the connection adds its prefix.
    pub key: &'a str,
    /// The amount in nanos when the budget blocks; None when it only alerts.
    pub amount: Option<i64>,
    /// Spend known from the database (every replica's usage records).
    pub floor: i64,
    /// When the window's counters may go (ms since the epoch).
    pub expire_at_ms: i64,
}

/// How a hold went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// Held on every budget; `over`: the indexes over their amount (only when forced).
    Yes { over: Vec<usize> },
    /// Budget `index` has `spent` and `held` (nanos) and cannot take the estimate.
    Refused { index: usize, spent: i64, held: i64 },
}

/// What an idempotency key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The caller holds it now and must complete or abandon it.
    Run,
    /// Another call holds it.
    InFlight,
    /// It was used for a different request.
    Mismatch,
    /// The stored answer.
    Done {
        status: u16,
        headers: Vec<u8>,
        body: Vec<u8>,
    },
}

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
    peek: Script,
    hold: Script,
    spend: Script,
    claim: Script,
    complete: Script,
    abandon: Script,
    client: redis::Client,
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
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(redis_error)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            peek: Script::new(PEEK),
            hold: Script::new(HOLD),
            spend: Script::new(SPEND),
            claim: Script::new(CLAIM),
            complete: Script::new(COMPLETE),
            abandon: Script::new(ABANDON),
            client,
        })
    }

    /// Holds `estimate` (nanos) on every budget of a call under `id`, for at most
    /// `lifetime`: a replica that dies mid-call holds nothing after that.
    pub async fn budget_hold(
        &self,
        id: &str,
        budgets: &[BudgetHold<'_>],
        estimate: i64,
        lifetime: Duration,
        force: bool,
    ) -> Result<Held, StoreError> {
        let mut inv = self.hold.prepare_invoke();
        for b in budgets {
            inv.key(format!("{}{}", self.prefix, b.key));
        }
        inv.arg(id)
            .arg(lifetime.as_millis() as u64)
            .arg(if force { "1" } else { "0" });
        for b in budgets {
            inv.arg(b.amount.unwrap_or(-1))
                .arg(b.floor.max(0))
                .arg(estimate.max(0))
                .arg(b.expire_at_ms);
        }
        let mut c = self.conn.clone();
        let out: Vec<redis::Value> = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        let bad = || StoreError::Redis(format!("the budget script answered {out:?}"));
        let int = |v: &redis::Value| -> Option<i64> {
            match v {
                redis::Value::Int(i) => Some(*i),
                redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            }
        };
        let index = |v: &redis::Value| {
            int(v)
                .and_then(|i| usize::try_from(i - 1).ok())
                .filter(|i| *i < budgets.len())
        };
        match out.first().and_then(int) {
            Some(1) => Ok(Held::Yes {
                over: out[1..]
                    .iter()
                    .map(|v| index(v).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            }),
            Some(0) if out.len() == 4 => Ok(Held::Refused {
                index: index(&out[1]).ok_or_else(bad)?,
                spent: int(&out[2]).ok_or_else(bad)?,
                held: int(&out[3]).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }

    /// Releases hold `id` of `estimate` and adds `cost` (nanos); returns each budget's spend.
    pub async fn budget_spend(
        &self,
        id: &str,
        keys: &[&str],
        estimate: i64,
        cost: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.spend.prepare_invoke();
        for k in keys {
            inv.key(format!("{}{k}", self.prefix));
        }
        inv.arg(format!("{id}:{}", estimate.max(0)))
            .arg(estimate.max(0))
            .arg(cost.max(0));
        let mut c = self.conn.clone();
        let out: Vec<String> = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        out.iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| StoreError::Redis(format!("the spend script answered {s:?}")))
            })
            .collect()
    }

    /// Claims idempotency key `key` for request `sha256` by `holder` for at most `lifetime`.
    pub async fn idempotency_claim(
        &self,
        key: &str,
        sha256: &str,
        holder: &str,
        lifetime: Duration,
    ) -> Result<Claimed, StoreError> {
        let mut inv = self.claim.prepare_invoke();
        inv.key(format!("{}{key}", self.prefix))
            .arg(sha256)
            .arg(holder)
            .arg(lifetime.as_millis().max(1) as u64);
        let mut c = self.conn.clone();
        let out: Vec<Vec<u8>> = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        let bad = || StoreError::Redis("the idempotency script answered unexpectedly".into());
        match out.first().map(Vec::as_slice) {
            Some(b"run") => Ok(Claimed::Run),
            Some(b"inflight") => Ok(Claimed::InFlight),
            Some(b"mismatch") => Ok(Claimed::Mismatch),
            Some(b"done") if out.len() == 4 => Ok(Claimed::Done {
                status: std::str::from_utf8(&out[1])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?,
                headers: out[2].clone(),
                body: out[3].clone(),
            }),
            _ => Err(bad()),
        }
    }

    /// Stores the answer of a key `holder` claimed, kept for `lifetime`; false when the claim
    /// was lost (expired, or taken over).
    pub async fn idempotency_complete(
        &self,
        key: &str,
        holder: &str,
        status: u16,
        headers: &[u8],
        body: &[u8],
        lifetime: Duration,
    ) -> Result<bool, StoreError> {
        let mut inv = self.complete.prepare_invoke();
        inv.key(format!("{}{key}", self.prefix))
            .arg(holder)
            .arg(status)
            .arg(headers)
            .arg(body)
            .arg(lifetime.as_millis().max(1) as u64);
        let mut c = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        Ok(done == 1)
    }

    /// Frees a claim `holder` could not complete, so a retry runs.
    pub async fn idempotency_abandon(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let mut inv = self.abandon.prepare_invoke();
        inv.key(format!("{}{key}", self.prefix)).arg(holder);
        let mut c = self.conn.clone();
        inv.invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(redis_error)
    }

    /// Tells every replica listening on `channel` that `message` happened.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(format!("{}{channel}", self.prefix))
            .arg(message)
            .query_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(redis_error)
    }

    /// Calls `on_message` for every message published on `channel` until the subscription
    /// breaks (an error) or `on_message` returns false (Ok). `subscribed` runs once listening.
    pub async fn listen(
        &self,
        channel: &str,
        subscribed: impl FnOnce(),
        mut on_message: impl FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        use futures_util::StreamExt as _;
        let mut pubsub = self.client.get_async_pubsub().await.map_err(redis_error)?;
        pubsub
            .subscribe(format!("{}{channel}", self.prefix))
            .await
            .map_err(redis_error)?;
        subscribed();
        let mut messages = pubsub.on_message();
        while let Some(m) = messages.next().await {
            let text: String = m.get_payload().unwrap_or_default();
            if !on_message(&text) {
                return Ok(());
            }
        }
        Err(StoreError::Redis("the subscription was closed".into()))
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

    /// Redis's clock and the TATs of `keys` (µs; 0 for a limit never used), charging nothing.
    pub async fn peek(&self, keys: &[&str]) -> Result<(i64, Vec<i64>), StoreError> {
        let mut inv = self.peek.prepare_invoke();
        for k in keys {
            inv.key(format!("{}{k}", self.prefix));
        }
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await.map_err(redis_error)?;
        match out.split_first() {
            Some((now, tats)) if tats.len() == keys.len() => Ok((*now, tats.to_vec())),
            _ => Err(StoreError::Redis(format!(
                "the peek script answered {out:?}"
            ))),
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
