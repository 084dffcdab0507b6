"""Writes N FOCUS 1.2-shaped billing rows as CSV to stdout-named file (seeded, so runs compare).

usage: gen_focus.py OUT.csv N
"""
import random
import sys

out, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
teams = ["ml", "web", "data", "search", "infra", "sec"]
with open(out, "w") as f:
    f.write("BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,"
            "ProviderName,ServiceName,ServiceCategory,ChargeCategory,RegionId,ResourceId,SkuId,"
            "ChargeDescription,BillingAccountId,SubAccountId,Tags\n")
    for i in range(n):
        d = 1 + i % 30
        h = i % 24
        c = random.random() * 3
        t = teams[i % len(teams)]
        tags = '"{""Team"": ""%s"", ""Env"": ""prod""}"' % t if i % 10 else ""
        f.write(f"{c:.10f},{c:.10f},{c * 1.1:.10f},USD,2026-10-{d:02d}T{h:02d}:00:00Z,"
                f"2026-10-{d:02d}T{h:02d}:59:59Z,AWS,Amazon EC2,Compute,Usage,us-east-1,"
                f"i-{i % 5000:08x},SKU{i % 300},Usage of m5.large,1234,5678,{tags}\n")
